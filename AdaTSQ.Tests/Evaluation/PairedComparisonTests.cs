using AdaTSQ.Evaluation;

namespace AdaTSQ.Tests.Evaluation;

public class PairedComparisonTests
{
    [Test]
    public void McNemarOnAHandComputedTable()
    {
        // 50 both right, 9 only A, 2 only B, 39 neither: X = 2 of 11 discordant ~ Bin(11, ½);
        // P(X ≤ 2) = (1 + 11 + 55) / 2048 = 67 / 2048, two-sided p = 134 / 2048 = 0.0654296875.
        var a = new List<bool>();
        var b = new List<bool>();
        void Add(int count, bool x, bool y) { for (int i = 0; i < count; i++) { a.Add(x); b.Add(y); } }
        Add(50, true, true);
        Add(9, true, false);
        Add(2, false, true);
        Add(39, false, false);
        var result = PairedComparison.McNemar(a, b);
        Assert.That((result.Both, result.OnlyA, result.OnlyB, result.Neither), Is.EqualTo((50, 9, 2, 39)));
        Assert.That(result.PValue, Is.EqualTo(134.0 / 2048).Within(1e-12));
        Assert.That(result.AccuracyDifference, Is.EqualTo(-0.07).Within(1e-12));
        Assert.That(PairedComparison.McNemar(b, a).PValue, Is.EqualTo(result.PValue), "symmetric");
    }

    [Test]
    public void McNemarWithoutOrWithBalancedDiscordantPairsIsOne()
    {
        Assert.That(PairedComparison.McNemar([true, false, true], [true, false, true]).PValue, Is.EqualTo(1.0));
        Assert.That(PairedComparison.McNemarExactP(3, 3), Is.EqualTo(1.0));
        // 0 vs 5: 2 · (½)^5 = 0.0625.
        Assert.That(PairedComparison.McNemarExactP(0, 5), Is.EqualTo(0.0625).Within(1e-12));
    }

    [Test]
    public void ThePairedDifferenceIntervalIsTheTIntervalOfTheDifferences()
    {
        // b_i = a_i + 0.5 + e_i with e = ±0.2 alternating: differences 0.7, 0.3, …; mean 0.5, sd of the
        // differences 0.2·√(n/(n−1)); interval 0.5 ± t_{n−1} · sd / √n. The large spread of a (0–100) is paired away.
        const int n = 100;
        var a = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        var b = a.Select((v, i) => v + 0.5 + (i % 2 == 0 ? 0.2 : -0.2)).ToArray();
        var d = PairedComparison.MeanDifference(a, b);
        double sd = 0.2 * Math.Sqrt(n / (n - 1.0));
        double half = MathNet.Numerics.Distributions.StudentT.InvCDF(0, 1, n - 1, 0.975) * sd / Math.Sqrt(n);
        Assert.That(d.Count, Is.EqualTo(n));
        Assert.That(d.Excluded, Is.Zero);
        Assert.That(d.Difference.Estimate, Is.EqualTo(0.5).Within(1e-12));
        Assert.That(d.Difference.Lower, Is.EqualTo(0.5 - half).Within(1e-9));
        Assert.That(d.Difference.Upper, Is.EqualTo(0.5 + half).Within(1e-9));
        Assert.That(d.MeanB - d.MeanA, Is.EqualTo(0.5).Within(1e-12));
        Assert.That(d.Difference.Method, Is.EqualTo("t"));
    }

    [Test]
    public void PairsWithAnInfiniteValueAreLeftOutAndCounted()
    {
        var d = PairedComparison.MeanDifference([1, 2, double.PositiveInfinity, 4], [2, 3, 5, 5]);
        Assert.That((d.Count, d.Excluded), Is.EqualTo((3, 1)));
        Assert.That(d.Difference.Estimate, Is.EqualTo(1.0));
        Assert.Throws<ArgumentException>(() => PairedComparison.MeanDifference([1.0], [1.0, 2.0]));
    }
}
