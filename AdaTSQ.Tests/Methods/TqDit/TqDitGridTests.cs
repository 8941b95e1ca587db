using AdaTSQ.Methods.TqDit;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.TqDit;

/// <summary>TQ-DiT's quantizer formulas, its step grid, its timestep groups and the per-layer search on cases with known answers.</summary>
public class TqDitGridTests
{
    private static float[] Values(Tensor t) => t.to(ScalarType.Float32).data<float>().ToArray();

    [Test]
    public void InitialStepAndCandidateGridFollowThePaper()
    {
        Assert.That(TqDitGrid.InitialStep(7.5, 4), Is.EqualTo(1.0).Within(1e-12), "Δ0 = max|x| / (2^(k−1) − 0.5)");
        Assert.That(TqDitGrid.InitialStep(127.5, 8), Is.EqualTo(1.0).Within(1e-12));
        var c = TqDitGrid.Candidates(2.0, 0.01, 1.2, 100);
        Assert.That(c, Has.Length.EqualTo(101));
        Assert.That(c[0], Is.EqualTo(0.02).Within(1e-12));
        Assert.That(c[50], Is.EqualTo(1.21).Within(1e-12), "(α + 50(β−α)/100)·Δ0 = 0.605·2");
        Assert.That(c[100], Is.EqualTo(2.4).Within(1e-12));
    }

    [Test]
    public void SymmetricQuantizerRoundsAndClampsToItsGrid()
    {
        using var x = torch.tensor(new float[] { -9f, -7.4f, -0.5f, 0.49f, 2.6f, 8f });
        var (pmin, pmax) = TqDitGrid.PaperRange(4);
        Assert.That((pmin, pmax), Is.EqualTo((-8, 7)));
        using var paper = TqDitGrid.FakeQuantize(x, 1.0, pmin, pmax);
        Assert.That(Values(paper), Is.EqualTo(new float[] { -8f, -7f, 0f, 0f, 3f, 7f }));
        var (lmin, lmax) = TqDitGrid.LibraryRange(4);
        using var library = TqDitGrid.FakeQuantize(x * 0.5f, 0.5, lmin, lmax);
        Assert.That(Values(library), Is.EqualTo(new float[] { -3.5f, -3.5f, 0f, 0f, 1.5f, 3.5f }), "restricted grid ±7, step 0.5");
    }

    [Test]
    public void PostGeluMultiRegionQuantizerUsesTheFixedNegativeStep()
    {
        double sNeg = 0.16997124 / 8;
        using var x = torch.tensor(new float[] { -1f, -0.05f, 0f, 0.3f, 0.04f, 2f });
        var q = Values(TqDitGrid.PostGelu(x, 4, positiveStep: 0.1));
        Assert.That(q[0], Is.EqualTo(-8 * sNeg).Within(1e-6), "clamped to −2^(k−1)·s⁻ = −0.16997");
        Assert.That(q[1], Is.EqualTo(-2 * sNeg).Within(1e-6), "round(−0.05/s⁻) = −2");
        Assert.That(q[2], Is.EqualTo(0f));
        Assert.That(q[3], Is.EqualTo(0.3).Within(1e-6));
        Assert.That(q[4], Is.EqualTo(0.0).Within(1e-6), "round(0.4) = 0 on the positive step");
        Assert.That(q[5], Is.EqualTo(0.7).Within(1e-6), "clamped to (2^(k−1) − 1)·s⁺");
    }

    [Test]
    public void PostSoftmaxMultiRegionQuantizerIsPiecewiseNotSummed()
    {
        // k = 4: m = 8, s1 = 0.01, split m·s1 = 0.08; region 2 has step 1/8.
        using var x = torch.tensor(new float[] { 0.034f, 0.079f, 0.08f, 0.5f, 1f, 0f });
        var q = Values(TqDitGrid.PostSoftmax(x, 4, smallStep: 0.01));
        Assert.That(q[0], Is.EqualTo(0.03).Within(1e-6));
        Assert.That(q[1], Is.EqualTo(0.07).Within(1e-6), "region 1 is clamped to (m − 1)·s1");
        Assert.That(q[2], Is.EqualTo(0.125).Within(1e-6), "region 2: round(0.08·8)/8; the reference's sum would give 0.125 + 0.07");
        Assert.That(q[3], Is.EqualTo(0.5).Within(1e-6));
        Assert.That(q[4], Is.EqualTo(1.0).Within(1e-6));
        Assert.That(q[5], Is.EqualTo(0f));
    }

    [Test]
    public void TimestepGroupsAreMinOfTOverTOverGAndGMinusOne()
    {
        // 250 steps, 10 groups (the reference): t = 249 − step; group = min(t // 25, 9).
        Assert.That(TqDitOptions.GroupOf(0, 250, 10), Is.EqualTo(9));
        Assert.That(TqDitOptions.GroupOf(249 - 25, 250, 10), Is.EqualTo(1));
        Assert.That(TqDitOptions.GroupOf(249 - 24, 250, 10), Is.EqualTo(0));
        Assert.That(TqDitOptions.GroupOf(249, 250, 10), Is.EqualTo(0));
        // 20 steps, 3 groups: T/G = 6.67, t // 6.67 = floor(3t/20).
        var groups = Enumerable.Range(0, 20).Select(i => TqDitOptions.GroupOf(i, 20, 3)).ToArray();
        var expected = Enumerable.Range(0, 20).Select(i => Math.Min((int)Math.Floor((19 - i) / (20.0 / 3)), 2)).ToArray();
        Assert.That(groups, Is.EqualTo(expected));
        Assert.That(groups.Distinct().Count(), Is.EqualTo(3));
        Assert.That(Enumerable.Range(0, 5).Select(i => TqDitOptions.GroupOf(i, 5, 1)), Is.All.EqualTo(0));
    }

    // A 1×2 weight [1, 0.26] at 2 bits (grid ±1), seen through the inputs e0 and e1: the weighted error is
    // g0²(1 − Δ)² + g1²(0.26 − q(0.26))². With g = 1 the best candidate is the largest, 1.2·Δ0 = 0.8 (0.26 rounds to 0);
    // with g0 = 0.1 the error of 0.26 dominates and the best step is near (0.02 + 0.52)/2.02 = 0.2673.
    private static double SearchWeight(float g0, float g1)
    {
        using var scope = torch.NewDisposeScope();
        var w = torch.tensor(new float[] { 1f, 0.26f }).reshape(1, 2);
        var x = torch.eye(2);
        var g = torch.tensor(new float[] { g0, g1 }).reshape(2, 1);
        var r = TqDitLayerSearch.Search("toy", w, null, x, g, null, 1, 1, weightBits: 2, activationBits: 16, new TqDitOptions());
        Assert.That(r.FinalError, Is.LessThanOrEqualTo(r.InitialError));
        return r.WeightSteps.Single();
    }

    [Test]
    public void TheSearchPicksTheStepWithTheSmallestWeightedError()
    {
        Assert.That(SearchWeight(1f, 1f), Is.EqualTo(0.8).Within(1e-6));
    }

    [Test]
    public void GradientWeightingChangesTheChosenStep()
    {
        double weighted = SearchWeight(0.1f, 1f);
        Assert.That(weighted, Is.EqualTo(0.2673).Within(0.005));
        Assert.That(weighted, Is.Not.EqualTo(SearchWeight(1f, 1f)).Within(0.1));
    }

    [Test]
    public void EachTimestepGroupGetsItsOwnActivationStep()
    {
        // Rows of group 0 are ten times smaller than those of group 1: their steps follow.
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(5);
        var small = torch.rand([64, 4], generator: gen) * 2 - 1;
        var x = torch.cat([small, small * 10]);
        var w = torch.eye(4);
        var g = torch.ones(128, 4);
        var groups = Enumerable.Range(0, 128).Select(i => i < 64 ? 0 : 1).ToArray();
        var r = TqDitLayerSearch.Search("toy", w, null, x, g, groups, 2, 1, weightBits: 8, activationBits: 4, new TqDitOptions());
        Assert.That(r.ActivationSteps, Has.Count.EqualTo(2));
        Assert.That(r.ActivationSteps[1] / r.ActivationSteps[0], Is.EqualTo(10).Within(2.5));
        Assert.That(r.OverallActivationStep, Is.GreaterThan(r.ActivationSteps[0]));
        Assert.That(r.FinalError, Is.LessThan(r.InitialError));
    }

    [Test]
    public void QkvHasThreeParts()
    {
        Assert.That(TqDitQuantizer.PartsOf("blocks.0.attn.qkv", 96), Is.EqualTo(3));
        Assert.That(TqDitQuantizer.PartsOf("blocks.0.mlp.fc1", 96), Is.EqualTo(1));
        using var scope = torch.NewDisposeScope();
        var w = torch.cat([torch.ones(2, 3), torch.ones(2, 3) * 10, torch.ones(2, 3) * 100]);
        using var q = new TqDitQuantizer().Quantize("attn.qkv", w, global::AdaTSQ.Quantization.QuantSpec.Weight(4), null);
        var scales = Values(q.Parameters.Scale.flatten());
        Assert.That(scales, Is.EqualTo(new[] { 1 / 7.5f, 1 / 7.5f, 10 / 7.5f, 10 / 7.5f, 100 / 7.5f, 100 / 7.5f }).Within(1e-5f));
    }
}
