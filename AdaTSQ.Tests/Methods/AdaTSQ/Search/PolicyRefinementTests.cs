using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using AdaTSQ.Methods.AdaTSQ.Nested;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.Rtn;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

/// <summary>
/// The local refinement after the beam, checked against a brute-force enumeration of every per-layer assignment on
/// tiny instances: 3 layers (1024, 1024 and 4096 weights), 2 widths, 4 steps in 2 stages — 64 assignments.
/// </summary>
public class PolicyRefinementTests
{
    private static readonly double[] Gains = [0.5, 6.0, 0.5, 3.0];

    private sealed class SyncProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }

    private static BitWidthSearchOptions Options(double budget, RefinementNeighbourhood neighbourhood = RefinementNeighbourhood.AcrossStages) => new()
    {
        WeightBits = [3, 8],
        ActivationSpec = QuantSpec.FullPrecision,
        Budget = BitBudget.AverageWeightBits(budget),
        BeamWidth = 4,
        StepsPerStage = 2,
        EvaluateStaticReferences = false,
        RefinementRounds = 40,
        RefinementNeighbourhood = neighbourhood,
    };

    /// <summary>A sensitivity that ranks the layers wrongly on purpose (every layer the same error): the beam's candidates then upgrade fc1 first.</summary>
    private static LayerSensitivity Flat(IReadOnlyList<QuantLinear> layers) =>
        new(layers.Select(l => l.LayerName).ToList(), [3, 8], layers.Select(_ => new[] { 1.0, 0.01 }).ToArray());

    // uniformCandidates: the beam may only choose every layer at 3 or every layer at 8 per stage, so whenever the
    // optimum mixes widths within a stage the beam cannot find it and the refinement must.
    [TestCase(4.5, false, 21)]
    [TestCase(5.5, false, 21)]
    [TestCase(6.5, false, 21)]
    [TestCase(4.5, true, 21)]
    [TestCase(5.5, true, 21)]
    [TestCase(6.5, true, 21)]
    [TestCase(4.5, true, 41)]
    [TestCase(6.5, true, 41)]
    public void AcrossStagesTheRefinementReachesTheBruteForceOptimum(double budget, bool uniformCandidates, long seed)
    {
        using var model = new ToySearchModel(seed, middle: true);
        var options = Options(budget) with { CandidateLevels = uniformCandidates ? [3, 8] : null };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var brute = BruteForce(layers, trajectories, options);
        var optimum = brute.MinBy(b => b.Mse);

        var result = new BitWidthSearch(layers, trajectories, options).Run();

        var report = result.Refinement!;
        var refined = Bits(result.Best, layers, options.StepsPerStage);
        TestContext.Out.WriteLine($"{brute.Count} feasible assignments; optimum {Format(optimum.Bits)} MSE {optimum.Mse:E6}");
        TestContext.Out.WriteLine($"beam {Format(Bits(result.BeamBest, layers, options.StepsPerStage))} {result.BeamBest.FinalMse:E6}, refined {Format(refined)} {result.Best.FinalMse:E6} " +
            $"({report.Rounds} rounds, {report.MovesEvaluated} moves, accepted: {string.Join("; ", report.Accepted.Select(m => string.Join(" + ", m)))})");
        Assert.That(result.Best.FinalMse, Is.LessThanOrEqualTo(result.BeamBest.FinalMse * (1 + 1e-6)), "never worse than the beam's pick");
        Assert.That(result.Best.FinalMse, Is.EqualTo(optimum.Mse).Within(1e-6 * optimum.Mse), "reaches the brute-force optimum");
        Assert.That(refined, Is.EqualTo(optimum.Bits));
        Assert.That(result.Best.AverageWeightBits, Is.LessThanOrEqualTo(budget + 1e-9));
        Assert.That(report.Converged, "it stopped at a local optimum, not because the rounds ran out");
        // The refinement's errors are those of lone runs: the brute force's value for the same bits.
        Assert.That(report.FinalMse, Is.EqualTo(optimum.Mse).Within(1e-9 * optimum.Mse));
        if (uniformCandidates && optimum.Bits.Any(stage => stage.Distinct().Count() > 1))
            Assert.That(report.Accepted, Is.Not.Empty, "the beam could not reach this optimum: the refinement moved");
    }

    [TestCase(4.5)]
    [TestCase(5.5)]
    [TestCase(6.5)]
    public void WithinStagesTheRefinementIsNeverWorseThanTheBeamAndNeverBetterThanTheOptimum(double budget)
    {
        using var model = new ToySearchModel(seed: 21, middle: true);
        var options = Options(budget, RefinementNeighbourhood.WithinStage);
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var brute = BruteForce(layers, trajectories, options);
        var optimum = brute.MinBy(b => b.Mse);

        var result = new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run();

        TestContext.Out.WriteLine($"optimum {Format(optimum.Bits)} MSE {optimum.Mse:E6}; beam {result.BeamBest.FinalMse:E6}, refined {result.Best.FinalMse:E6} {Format(Bits(result.Best, layers, options.StepsPerStage))}");
        Assert.That(result.Best.FinalMse, Is.LessThanOrEqualTo(result.BeamBest.FinalMse * (1 + 1e-6)));
        Assert.That(result.Best.FinalMse, Is.GreaterThanOrEqualTo(optimum.Mse * (1 - 1e-6)));
        // The refined policy's error is that of a run on its own: the brute force's value for its bits.
        var own = brute.Single(b => Format(b.Bits) == Format(Bits(result.Best, layers, options.StepsPerStage)));
        Assert.That(result.Best.FinalMse, Is.EqualTo(own.Mse).Within(1e-6 * own.Mse));
        Assert.That(result.Refinement!.Converged);
    }

    [Test]
    public void AtATightBudgetAWithinStagePairFixesAMisrankedLayer()
    {
        using var model = new ToySearchModel(seed: 21, middle: true);
        // Average 4.25 = ([8,8,3] + [8,3,3]) / 2 exactly: no single move up fits, only swaps can improve.
        var options = Options(4.25, RefinementNeighbourhood.WithinStage) with { CandidateLevels = [3, 3.9, 4.7, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        Assert.That(layers.Select(l => l.LayerName), Is.EqualTo(new[] { "fc1", "fc2", "mid" }));
        // The sensitivity ranks fc1 ≫ mid ≫ fc2, so the 3.9 candidate is [8,3,3] and the 4.7 one [8,8,3].
        var misranked = new LayerSensitivity(["fc1", "fc2", "mid"], [3, 8], [[10, 0.1], [0.1, 0.001], [1, 0.01]]);
        var brute = BruteForce(layers, trajectories, options);
        var optimum = brute.MinBy(b => b.Mse);

        var result = new BitWidthSearch(layers, trajectories, options, misranked).Run();

        var report = result.Refinement!;
        TestContext.Out.WriteLine($"optimum {Format(optimum.Bits)} {optimum.Mse:E6}; beam {Format(Bits(result.BeamBest, layers, 2))} {result.BeamBest.FinalMse:E6}; " +
            $"refined {Format(Bits(result.Best, layers, 2))} {result.Best.FinalMse:E6}; accepted: {string.Join("; ", report.Accepted.Select(m => string.Join(" + ", m)))}");
        Assert.That(result.Best.FinalMse, Is.LessThan(result.BeamBest.FinalMse), "the beam's misranked pick is improved");
        Assert.That(report.Accepted, Has.Some.Count.EqualTo(2), "by a swap within a stage");
        Assert.That(Bits(result.Best, layers, 2), Is.EqualTo(optimum.Bits), "reaching the brute-force optimum");
        Assert.That(result.Best.AverageWeightBits, Is.LessThanOrEqualTo(4.25 + 1e-9));
    }

    [Test]
    public void WithoutRoundsNothingIsRefined()
    {
        using var model = new ToySearchModel(seed: 22, middle: true);
        var options = Options(5.5) with { RefinementRounds = 0 };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run();
        Assert.That(result.Refinement, Is.Null);
        Assert.That(result.Best, Is.SameAs(result.BeamBest));
        Assert.That(result.Frontier, Does.Contain(result.Best));
    }

    [Test]
    public void MemoryAndBitOperationBudgetsHoldAfterRefinement()
    {
        using var model = new ToySearchModel(seed: 23, middle: true);
        var options = Options(8) with { WeightBits = [3, 4, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);

        long w4 = layers.Sum(l => l.GetWeightVersion(options.ConfigFor(4).Weight).StorageBytes);
        var memory = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.WeightMemory(w4) }, Flat3(layers)).Run();
        Assert.That(memory.Best.WeightMemoryBytes, Is.LessThanOrEqualTo(w4));
        Assert.That(memory.Best.FinalMse, Is.LessThanOrEqualTo(memory.BeamBest.FinalMse * (1 + 1e-6)));

        var full = new BitWidthSearch(layers, trajectories, options with { RefinementRounds = 0, EvaluateStaticReferences = true }).Run();
        double bops = full.StaticReferences.Single(s => s.AverageWeightBits == 8).AverageBitOperations * 0.6;
        var limited = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.AverageBitOperations(bops) }, Flat3(layers)).Run();
        Assert.That(limited.Best.AverageBitOperations, Is.LessThanOrEqualTo(bops * (1 + 1e-9)));
        Assert.That(limited.Best.FinalMse, Is.LessThanOrEqualTo(limited.BeamBest.FinalMse * (1 + 1e-6)));
        TestContext.Out.WriteLine($"memory: {memory.Refinement!.Accepted.Count} accepted, {memory.BeamBest.FinalMse:E4} → {memory.Best.FinalMse:E4}; " +
            $"BOPs: {limited.Refinement!.Accepted.Count} accepted, {limited.BeamBest.FinalMse:E4} → {limited.Best.FinalMse:E4}");
    }

    /// <summary>
    /// With nested weights (W3 read from W8's codes, W4 independent) a layer that runs W3 anywhere still needs its W8
    /// codes in memory: the beam and the refinement must count the parent once per layer, also when a move leaves a layer
    /// at W3 only (counting W3's scales alone would make W3 look nearly free). Recounted here from the layers,
    /// independently of the search's cost model, at budgets between "every layer W4" and "every layer W8".
    /// </summary>
    [TestCase(0.25)]
    [TestCase(0.5)]
    [TestCase(0.75)]
    public void WithNestedVersionsTheMemoryBudgetCountsEachParentOnce(double share)
    {
        using var model = new ToySearchModel(seed: 25, middle: true);
        var options = Options(8) with { WeightBits = [3, 4, 8] };
        var layers = model.Quantize(options);
        var (w3, w4, w8) = (options.ConfigFor(3).Weight, options.ConfigFor(4).Weight, options.ConfigFor(8).Weight);
        var nested = new NestedQuantizer(new RtnQuantizer(), parentBits: 8);
        foreach (var layer in layers)
        {
            using (var w = layer.SmoothedWeight())
                layer.SetWeightVersion(nested.Quantize(layer.LayerName, w, w3, null));
            Assert.That(layer.NestWeightVersions(), Is.EqualTo(1), layer.LayerName);
            Assert.That(layer.NestedParentOf(w3), Is.EqualTo(w8));
            Assert.That(layer.NestedParentOf(w4), Is.Null);
        }
        using var trajectories = model.Trajectories(Gains);

        long all4 = layers.Sum(l => l.WeightVersionBytes(w4)), all8 = layers.Sum(l => l.WeightVersionBytes(w8));
        long budget = all4 + (long)(share * (all8 - all4));
        var sensitivity = new LayerSensitivity(layers.Select(l => l.LayerName).ToList(), [3, 4, 8], layers.Select(_ => new[] { 1.0, 0.5, 0.01 }).ToArray());
        var result = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.WeightMemory(budget) }, sensitivity).Run();

        long Recount(FrontierPoint point) => layers.Sum(l =>
        {
            var used = point.Policy.ConfigsFor(l.LayerName).Select(c => c.Weight).Where(s => s.IsEnabled).ToHashSet();
            var parentsNeeded = used.Select(l.NestedParentOf).OfType<QuantSpec>().Where(p => !used.Contains(p)).Distinct();
            return used.Sum(l.WeightVersionBytes) + parentsNeeded.Sum(l.WeightVersionBytes);
        });
        Assert.That(Recount(result.BeamBest), Is.EqualTo(result.BeamBest.WeightMemoryBytes));
        Assert.That(Recount(result.Best), Is.LessThanOrEqualTo(budget), "the refined policy's memory, counted from the layers");
        Assert.That(result.Best.FinalMse, Is.LessThanOrEqualTo(result.BeamBest.FinalMse * (1 + 1e-6)));
        TestContext.Out.WriteLine($"budget {budget} B (all W4 {all4} B, all W8 {all8} B): beam {result.BeamBest.WeightMemoryBytes} B, " +
            $"refined {Recount(result.Best)} B after {result.Refinement!.Accepted.Count} moves, {result.BeamBest.FinalMse:E4} → {result.Best.FinalMse:E4}");
    }

    [Test]
    public void SampledRoundsAreSeededAndBounded()
    {
        using var model = new ToySearchModel(seed: 24, middle: true);
        var options = Options(5.5) with { RefinementMovesPerRound = 3, RefinementRounds = 6, RefinementSeed = 5 };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var a = new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run();
        var b = new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run();
        Assert.That(a.Refinement!.MovesEvaluated, Is.LessThanOrEqualTo(3 * a.Refinement.Rounds));
        Assert.That(a.Refinement.Converged, Is.False, "a sample of the moves proves no local optimum");
        Assert.That(b.Refinement!.Accepted.Select(m => string.Join(" + ", m)), Is.EqualTo(a.Refinement.Accepted.Select(m => string.Join(" + ", m))));
        Assert.That(b.Best.FinalMse, Is.EqualTo(a.Best.FinalMse));
        Assert.That(a.Best.FinalMse, Is.LessThanOrEqualTo(a.BeamBest.FinalMse * (1 + 1e-6)));
    }

    [Test]
    public void CancellationProgressAndTensorsAreHandled()
    {
        using var model = new ToySearchModel(seed: 25, middle: true);
        var options = Options(5.5);
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var reports = new List<QuantizationProgress>();
        new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run(new SyncProgress(reports.Add));
        Assert.That(reports.Where(p => p.Stage == "search refine").Select(p => p.Total), Is.Not.Empty.And.All.EqualTo(options.RefinementRounds));

        long live = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        for (int i = 0; i < 2; i++) new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run();
        Assert.That(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, Is.EqualTo(live), "tensors alive after two more refined searches");

        using var cts = new CancellationTokenSource();
        // Cancelled when the beam's last stage is done: the refinement is what sees the token first.
        var cancelInRefinement = new SyncProgress(p => { if (p.Stage == "search" && p.Completed == p.Total) cts.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => new BitWidthSearch(layers, trajectories, options, Flat(layers)).Run(cancelInRefinement, cts.Token));
        Assert.That(layers.All(l => l.Policy is null), "the layers' policies are restored");
        Assert.That(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, Is.EqualTo(live), "a cancelled refinement frees its tensors");
    }

    private static LayerSensitivity Flat3(IReadOnlyList<QuantLinear> layers) =>
        new(layers.Select(l => l.LayerName).ToList(), [3, 4, 8], layers.Select(_ => new[] { 1.0, 0.5, 0.01 }).ToArray());

    private static string Format(int[][] bits) => string.Join(" | ", bits.Select(b => string.Join(",", b)));

    private static int[][] Bits(FrontierPoint point, IReadOnlyList<QuantLinear> layers, int per) =>
        Enumerable.Range(0, point.StepAverageBits.Count / per).Select(g => layers.Select(l => point.Policy[g * per, l.LayerName].WeightBits).ToArray()).ToArray();

    /// <summary>Every per-layer assignment (bits per stage and layer) that meets the budget, with the final MSE of a run on its own.</summary>
    private static List<(int[][] Bits, double Mse)> BruteForce(IReadOnlyList<QuantLinear> layers, SearchTrajectories t, BitWidthSearchOptions options)
    {
        int steps = t.Sampler.StepCount, per = options.StepsPerStage, stages = steps / per;
        var widths = options.WeightBits.Distinct().Order().ToArray();
        var n = layers.Select(l => (double)l.InFeatures * l.OutFeatures).ToArray();
        var names = layers.Select(l => l.LayerName).ToList();
        int cells = stages * layers.Count;
        using var fp = Run(t, layers, null);
        var results = new List<(int[][], double)>();
        for (long code = 0; code < (long)Math.Pow(widths.Length, cells); code++)
        {
            var bits = new int[stages][];
            long rest = code;
            for (int g = 0; g < stages; g++)
            {
                bits[g] = new int[layers.Count];
                for (int l = 0; l < layers.Count; l++) { bits[g][l] = widths[rest % widths.Length]; rest /= widths.Length; }
            }
            double average = Enumerable.Range(0, steps).Average(s => Enumerable.Range(0, layers.Count).Sum(l => n[l] * bits[s / per][l]) / n.Sum());
            if (average > options.Budget.Value * (1 + 1e-12)) continue;
            var rows = Enumerable.Range(0, steps).Select(s => (IReadOnlyList<LayerQuantConfig>)bits[s / per].Select(options.ConfigFor).ToList()).ToList();
            using var x = Run(t, layers, new DynamicTimestepPolicy(names, rows));
            results.Add((bits, ImageMetrics.Mse(x, fp)));
        }
        return results;
    }

    private static Tensor Run(SearchTrajectories t, IReadOnlyList<QuantLinear> layers, ITimestepPolicy? policy)
    {
        foreach (var l in layers) l.Policy = policy;
        try
        {
            var x = t.Noise.clone();
            for (int s = 0; s < t.Sampler.StepCount; s++)
            {
                var next = t.Sampler.Step(t.Model, x, t.Labels, s);
                x.Dispose();
                x = next;
            }
            return x;
        }
        finally
        {
            foreach (var l in layers) l.Policy = null;
        }
    }
}
