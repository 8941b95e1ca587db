using System.Collections;
using AdaTSQ.Evaluation;
using AdaTSQ.Evaluation.Comparison;

namespace AdaTSQ.Tests.Evaluation.Comparison;

public class CellCacheTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = ToyComparison.TempDirectory();

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static ComparisonCell Cell(IReadOnlyList<double> psnr, string fingerprint = "abc123") => new()
    {
        Method = "rtn", Bits = "W4A4", Fingerprint = fingerprint, FingerprintInputs = new Dictionary<string, string> { ["k"] = "v" },
        Summary = new SettingSummary("rtn/W4A4", psnr.Count, new ConfidenceInterval(30, 29, 31, 0.95, "t"), null, null, null, 0),
        Psnr = psnr, Correct = [true, false],
    };

    /// <summary>A list whose enumeration is interrupted after <paramref name="after"/> values, as a kill or a cancellation would be.</summary>
    private sealed class InterruptedList(int count, int after) : IReadOnlyList<double>
    {
        public int Count => count;
        public double this[int index] => index;
        public IEnumerator<double> GetEnumerator()
        {
            for (int i = 0; i < count; i++)
            {
                if (i == after) throw new OperationCanceledException("interrupted while writing");
                yield return i;
            }
        }
        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }

    [Test]
    public void ACellRoundTripsWithInfiniteAndNaNValues()
    {
        var cache = new CellCache(_dir);
        var cell = Cell([double.PositiveInfinity, 12.5]) with { Summary = new SettingSummary("x", 2, new ConfidenceInterval(double.PositiveInfinity, double.NaN, double.NaN, 0.95, "t"), null, null, null, 0) };
        cache.Save(cell);
        var back = cache.TryLoad("rtn", "W4A4", "abc123");
        Assert.That(back, Is.Not.Null);
        Assert.That(back!.Psnr, Is.EqualTo(cell.Psnr));
        Assert.That(back.Correct, Is.EqualTo(cell.Correct));
        Assert.That(double.IsPositiveInfinity(back.Summary!.Psnr.Estimate) && double.IsNaN(back.Summary.Psnr.Lower));
        Assert.That(cache.TryLoad("rtn", "W4A4", "abc124"), Is.Null, "another fingerprint is another cell");
    }

    [Test]
    public void AnInterruptedWriteLeavesNoFileUnderTheFinalName()
    {
        var cache = new CellCache(_dir);
        string path = cache.PathOf("rtn", "W4A4", "abc123");
        Assert.Throws<OperationCanceledException>(() => cache.Save(Cell(new InterruptedList(50_000, 40_000))));
        Assert.That(File.Exists(path), Is.False);
        Assert.That(Directory.GetFiles(_dir), Is.Empty, "the temporary file is removed too");

        cache.Save(Cell([1, 2]));
        string before = File.ReadAllText(path);
        Assert.Throws<OperationCanceledException>(() => cache.Save(Cell(new InterruptedList(50_000, 40_000))));
        Assert.That(File.ReadAllText(path), Is.EqualTo(before), "an interrupted overwrite keeps the old complete cell");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => cache.Save(Cell([3, 4]), cts.Token));
        Assert.That(File.ReadAllText(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1));
    }

    [Test]
    public void AnUnreadableFileIsTreatedAsMissing()
    {
        var cache = new CellCache(_dir);
        File.WriteAllText(cache.PathOf("rtn", "W4A4", "abc123"), "{ \"Method\": \"rtn\", \"Bits\": ");
        Assert.That(cache.TryLoad("rtn", "W4A4", "abc123"), Is.Null);
    }

    [Test]
    public void TheFingerprintDependsOnEveryInputButNotOnTheirOrder()
    {
        var a = new Dictionary<string, string> { ["model"] = "m", ["samples"] = "1000", ["steps"] = "50" };
        var b = new Dictionary<string, string> { ["steps"] = "50", ["model"] = "m", ["samples"] = "1000" };
        Assert.That(CellFingerprint.Compute(a), Is.EqualTo(CellFingerprint.Compute(b)));
        Assert.That(CellFingerprint.Compute(a), Is.Not.EqualTo(CellFingerprint.Compute(new Dictionary<string, string>(a) { ["steps"] = "20" })));
        // A value cannot spill into the next key.
        Assert.That(CellFingerprint.Compute(new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" }),
            Is.Not.EqualTo(CellFingerprint.Compute(new Dictionary<string, string> { ["a"] = "1b=2" })));
        Assert.Throws<ArgumentException>(() => CellFingerprint.Compute(new Dictionary<string, string> { ["a"] = "1\nb=2" }));
    }
}
