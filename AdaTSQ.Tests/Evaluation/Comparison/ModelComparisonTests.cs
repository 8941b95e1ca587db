using AdaTSQ.Abstractions;
using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Tests.Evaluation.Comparison;

public class ModelComparisonTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = ToyComparison.TempDirectory();

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static readonly BitSetting[] Bits = [BitSetting.W8A8, BitSetting.W4A4];

    [Test]
    public void CellsAreCachedAndARerunComputesOnlyWhatIsMissing()
    {
        using var toy = new ToyComparison(_dir);
        var methods = new[] { toy.Rtn(), toy.Gptq() };
        var first = toy.Comparison().Run(methods, Bits);
        Assert.That(first.ComputedCells, Is.EqualTo(4));
        Assert.That(first.Cells.All(c => c.IsOk), string.Join("; ", first.Cells.Select(c => c.Failure)));
        Assert.That(toy.Configured, Is.EquivalentTo(new[] { "rtn/W8A8", "rtn/W4A4", "gptq/W8A8", "gptq/W4A4" }));
        Assert.That(toy.SampledChunks, Is.EqualTo(5 * 3), "the reference and four cells, three chunks each");
        Assert.That(toy.Model.modules().OfType<QuantLinear>(), Is.Empty, "every cell restores the model");
        Assert.That(first.Cell("rtn", "W4A4").Summary!.Psnr.Estimate, Is.LessThan(first.Cell("rtn", "W8A8").Summary!.Psnr.Estimate));

        toy.Configured.Clear();
        int sampled = toy.SampledChunks;
        var second = toy.Comparison().Run(methods, Bits);
        Assert.That((second.ComputedCells, second.LoadedCells), Is.EqualTo((0, 4)));
        Assert.That(toy.Configured, Is.Empty);
        Assert.That(toy.SampledChunks, Is.EqualTo(sampled), "nothing is sampled again, not even the reference");
        foreach (var cell in first.Cells)
        {
            var again = second.Cell(cell.Method, cell.Bits);
            Assert.That(again.Psnr, Is.EqualTo(cell.Psnr));
            Assert.That(again.Summary!.Psnr, Is.EqualTo(cell.Summary!.Psnr));
        }

        var comparison = toy.Comparison();
        comparison.Cache.Delete("gptq", "W4A4", first.Cell("gptq", "W4A4").Fingerprint);
        var third = comparison.Run(methods, Bits);
        Assert.That((third.ComputedCells, third.LoadedCells), Is.EqualTo((1, 3)));
        Assert.That(toy.Configured, Is.EqualTo(new[] { "gptq/W4A4" }));
        Assert.That(toy.SampledChunks, Is.EqualTo(sampled + 3), "only the deleted cell is sampled; the reference images are on disk");
        Assert.That(third.Cell("gptq", "W4A4").Psnr, Is.EqualTo(first.Cell("gptq", "W4A4").Psnr), "recomputed the same");
    }

    [Test]
    public void AChangedOptionChangesTheFingerprint()
    {
        using var toy = new ToyComparison(_dir);
        var methods = new[] { toy.Rtn() };
        var first = toy.Comparison().Run(methods, Bits);
        toy.Options = toy.Options with { Context = new Dictionary<string, string> { ["steps"] = "2" } };
        var second = toy.Comparison().Run(methods, Bits);
        Assert.That(second.ComputedCells, Is.EqualTo(2));
        Assert.That(second.Cell("rtn", "W8A8").Fingerprint, Is.Not.EqualTo(first.Cell("rtn", "W8A8").Fingerprint));
        toy.Options = toy.Options with { Evaluation = toy.Options.Evaluation with { Samples = 21 } };
        Assert.That(toy.Comparison().Run(methods, Bits).ComputedCells, Is.EqualTo(2));
        var renamed = toy.Method("rtn");
        var described = renamed with { Description = "toy rtn, other options" };
        Assert.That(toy.Comparison().Run([described], Bits).ComputedCells, Is.EqualTo(2), "the method's description is part of the key");
        Assert.That(toy.Comparison().Run([described], Bits).ComputedCells, Is.EqualTo(0));
    }

    [Test]
    public void AFailingCellIsRecordedAndTheRestCompletes()
    {
        using var toy = new ToyComparison(_dir);
        var picky = toy.Method("picky", (_, bits) =>
        {
            if (bits.Name == "W4A4") throw new NotSupportedException("picky does not do W4A4");
        });
        var methods = new[] { toy.Rtn(), picky };
        var result = toy.Comparison().Run(methods, Bits);
        var failed = result.Cell("picky", "W4A4");
        Assert.That(failed.Status, Is.EqualTo(CellStatus.Failed));
        Assert.That(failed.Failure, Does.Contain("NotSupportedException").And.Contain("picky does not do W4A4"));
        Assert.That(new[] { result.Cell("rtn", "W8A8"), result.Cell("rtn", "W4A4"), result.Cell("picky", "W8A8") }.All(c => c.IsOk));
        Assert.That(result.Verdicts("picky").Single(v => v.Bits == "W4A4").Outcome, Is.EqualTo(VerdictOutcome.Unavailable));
        Assert.That(toy.Model.modules().OfType<QuantLinear>(), Is.Empty);

        toy.Configured.Clear();
        var again = toy.Comparison().Run(methods, Bits);
        Assert.That(again.ComputedCells, Is.EqualTo(0), "a failure is cached like a result");
        Assert.That(again.Cell("picky", "W4A4").Failure, Is.EqualTo(failed.Failure));
        toy.Options = toy.Options with { RetryFailed = true };
        var retried = toy.Comparison().Run(methods, Bits);
        Assert.That((retried.ComputedCells, toy.Configured), Is.EqualTo((1, new List<string> { "picky/W4A4" })));
    }

    [Test]
    public void WhatAMethodsConfigurationOwnsIsDisposedAfterRestoreEvenWhenTheCellFails()
    {
        using var toy = new ToyComparison(_dir);
        var events = new List<string>();
        var owning = new ComparisonMethod("owning", "toy owning", (builder, bits) =>
        {
            if (bits.Name == "W4A4") builder.AddPostQuantizationStep(new FailingStep()); // fails after quantizing: the cell fails
            // Disposed once the cell is done: by then the model must hold no QuantLinear (Restore() ran first).
            return new Recorder(() => events.Add($"{bits.Name}: disposed, quantized layers left {toy.Model.modules().OfType<QuantLinear>().Count()}"));
        });
        var result = toy.Comparison().Run([owning], Bits);
        Assert.That(result.Cell("owning", "W8A8").IsOk);
        Assert.That(result.Cell("owning", "W4A4").Status, Is.EqualTo(CellStatus.Failed));
        Assert.That(result.Cell("owning", "W4A4").Failure, Does.Contain("the step fails on purpose"));
        Assert.That(events, Is.EquivalentTo(new[] { "W8A8: disposed, quantized layers left 0", "W4A4: disposed, quantized layers left 0" }));

        events.Clear();
        var again = toy.Comparison().Run([owning], Bits);
        Assert.That((again.ComputedCells, events.Count), Is.EqualTo((0, 0)), "a cached cell configures nothing");
    }

    private sealed class FailingStep : IPostQuantizationStep
    {
        public string Name => "failing";

        public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate, bool hasCalibrationData) => [];

        public object? Run(PostQuantizationContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("the step fails on purpose");
    }

    private sealed class Recorder(Action onDispose) : IDisposable
    {
        public void Dispose() => onDispose();
    }

    [Test]
    public void ACancelledRunKeepsTheFinishedCellsAndLeavesNoPartialFile()
    {
        using var toy = new ToyComparison(_dir);
        var methods = new[] { toy.Rtn(), toy.Gptq() };
        using var cts = new CancellationTokenSource();
        int calls = 0;
        // The reference (3 chunks), rtn/W8A8 (3), then cancelled in the middle of rtn/W4A4.
        var comparison = toy.Comparison((c, t) =>
        {
            if (++calls == 8) cts.Cancel();
            t.ThrowIfCancellationRequested();
            return toy.Sample(c, t);
        });
        Assert.Throws<OperationCanceledException>(() => comparison.Run(methods, Bits, cancellationToken: cts.Token));
        Assert.That(toy.Model.modules().OfType<QuantLinear>(), Is.Empty, "the cancelled cell restored the model");
        var files = Directory.GetFiles(_dir);
        Assert.That(files.Where(f => f.EndsWith(".tmp", StringComparison.Ordinal)), Is.Empty);
        var names = files.Select(f => Path.GetFileName(f)!).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.That(names, Has.Count.EqualTo(2), string.Join(", ", names));
        Assert.That(names[0], Does.StartWith("reference__"));
        Assert.That(names[1], Does.StartWith("rtn__W8A8__"));

        var resumed = toy.Comparison().Run(methods, Bits);
        Assert.That((resumed.ComputedCells, resumed.LoadedCells), Is.EqualTo((3, 1)));
    }

    [Test]
    public void InvalidGridsAreRefusedWithEveryProblem()
    {
        using var toy = new ToyComparison(_dir);
        var e = Assert.Throws<ArgumentException>(() => toy.Comparison().Run([toy.Rtn(), toy.Rtn()], [BitSetting.W8A8, BitSetting.W8A8]));
        Assert.That(e!.Message, Does.Contain("method 'rtn' is listed twice").And.Contain("bit setting 'W8A8' is listed twice"));
        Assert.Throws<ArgumentException>(() => new ModelComparison(toy.Model, toy.Sample, toy.Options with { ModelIdentity = "", BootstrapResamples = 1 }));
    }
}
