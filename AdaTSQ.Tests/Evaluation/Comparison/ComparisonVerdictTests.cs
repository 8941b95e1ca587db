using AdaTSQ.Evaluation;
using AdaTSQ.Evaluation.Comparison;

namespace AdaTSQ.Tests.Evaluation.Comparison;

public class ComparisonVerdictTests
{
    private static ComparisonCell Cell(string method, double[] psnr) => new()
    {
        Method = method, Bits = "W4A4", Fingerprint = method, FingerprintInputs = new Dictionary<string, string>(),
        Summary = new SettingSummary(method, psnr.Length, MeanInterval.Compute(psnr), null, null, null, 0), Psnr = psnr,
    };

    /// <summary>Per-image PSNR that varies a lot between images (σ ≈ 4 dB), as it does between Fashion-MNIST samples.</summary>
    private static double[] Images(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => 25 + 4 * (rng.NextDouble() * 2 - 1) * Math.Sqrt(3)).ToArray();
    }

    [Test]
    public void AConsistentSmallGainIsATieWhileTheCellIntervalsOverlap()
    {
        var baseline = Images(200, 1);
        var rng = new Random(2);
        var method = baseline.Select(p => p + 0.1 + 0.02 * (rng.NextDouble() - 0.5)).ToArray();
        var verdict = ComparisonResult.Judge(Cell("adatsq", method), Cell("rtn", baseline));
        Assert.That(verdict.Paired!.Difference.Lower, Is.GreaterThan(0), "the paired interval alone would call it");
        Assert.That(Cell("adatsq", method).Summary!.Psnr.Lower, Is.LessThan(Cell("rtn", baseline).Summary!.Psnr.Upper), "the cell intervals overlap");
        Assert.That(verdict.Outcome, Is.EqualTo(VerdictOutcome.Tie));
    }

    [Test]
    public void ALargeGainWithDisjointIntervalsIsAWinAndTheReverseALoss()
    {
        var baseline = Images(200, 1);
        var rng = new Random(3);
        var method = baseline.Select(p => p + 3 + 0.5 * (rng.NextDouble() - 0.5)).ToArray();
        Assert.That(Cell("adatsq", method).Summary!.Psnr.Lower, Is.GreaterThan(Cell("rtn", baseline).Summary!.Psnr.Upper));
        Assert.That(ComparisonResult.Judge(Cell("adatsq", method), Cell("rtn", baseline)).Outcome, Is.EqualTo(VerdictOutcome.Win));
        Assert.That(ComparisonResult.Judge(Cell("rtn", baseline), Cell("adatsq", method)).Outcome, Is.EqualTo(VerdictOutcome.Loss));
    }

    [Test]
    public void DisjointIntervalsWithAPairedIntervalAcrossZeroAreATie()
    {
        var high = new ConfidenceInterval(30, 29.5, 30.5, 0.95, "t");
        var low = new ConfidenceInterval(28, 27.5, 28.5, 0.95, "t");
        Assert.That(ComparisonVerdict.Decide(high, low, new ConfidenceInterval(2, 1, 3, 0.95, "t")), Is.EqualTo(VerdictOutcome.Win));
        Assert.That(ComparisonVerdict.Decide(high, low, new ConfidenceInterval(2, -0.1, 4.1, 0.95, "t")), Is.EqualTo(VerdictOutcome.Tie));
        Assert.That(ComparisonVerdict.Decide(low, high, new ConfidenceInterval(-2, -3, -1, 0.95, "t")), Is.EqualTo(VerdictOutcome.Loss));
        var touching = new ConfidenceInterval(29, 28.5, 29.5, 0.95, "t");
        Assert.That(ComparisonVerdict.Decide(high, touching, new ConfidenceInterval(1, 0.5, 1.5, 0.95, "t")), Is.EqualTo(VerdictOutcome.Tie), "intervals that touch overlap");
    }

    [Test]
    public void TheBestPerBitSettingIsSeparatedOnlyWhenItWinsAgainstEveryOther()
    {
        var baseline = Images(200, 1);
        var rng = new Random(4);
        var close = baseline.Select(p => p + 0.1 + 0.02 * (rng.NextDouble() - 0.5)).ToArray();
        var far = baseline.Select(p => p + 3).ToArray();
        var bits = new[] { BitSetting.W4A4 };
        var reference = Cell("reference", baseline) with { Bits = "unquantized" };
        var tied = new ComparisonResult(reference, ["rtn", "close"], bits, [Cell("rtn", baseline), Cell("close", close)], 2, 0);
        Assert.That(tied.BestPerBitSetting().Single(), Is.EqualTo(new BestCell("W4A4", tied.Cell("close", "W4A4"), false)));
        var clear = new ComparisonResult(reference, ["rtn", "close", "far"], bits, [Cell("rtn", baseline), Cell("close", close), Cell("far", far)], 3, 0);
        Assert.That(clear.BestPerBitSetting().Single().Cell!.Method, Is.EqualTo("far"));
        Assert.That(clear.BestPerBitSetting().Single().Separated);
        var verdicts = clear.Verdicts("far");
        Assert.That(verdicts.Select(v => (v.Baseline, v.Outcome)), Is.EqualTo(new[] { ("rtn", VerdictOutcome.Win), ("close", VerdictOutcome.Win) }));
    }
}
