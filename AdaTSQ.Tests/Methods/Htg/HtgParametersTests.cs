using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Htg;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Htg;

/// <summary>HTG's shift, EMA and scale formulas, and the per-layer parameters from calibration statistics.</summary>
public class HtgParametersTests
{
    [Test]
    public void ShiftIsTheMidpointOfEachStepsChannelRange()
    {
        using var scope = torch.NewDisposeScope();
        var lo = torch.tensor(new float[] { -1, 2, -6, 0 }).reshape(2, 2);
        var hi = torch.tensor(new float[] { 3, 4, 2, 10 }).reshape(2, 2);
        var z = HtgParameters.StepShifts(lo, hi);
        Assert.That(z.data<float>().ToArray(), Is.EqualTo(new float[] { 1, 3, -2, 5 }));
    }

    [Test]
    public void EmaRunsFromTheFirstStepTToTheLastStepOne()
    {
        using var scope = torch.NewDisposeScope();
        // Half-ranges (max − min)/2 per step: 4, 0, 0 (row 0 = the first sampling step, t = T). With α = 0.5:
        // m_T = 4, m_{T−1} = 0.5·4 + 0.5·0 = 2, m_1 = 1. The reverse direction would give 0.25·… = 2 at the end instead.
        var lo = torch.tensor(new float[] { -4, -1, 5 }).reshape(3, 1);
        var hi = torch.tensor(new float[] { 4, -1, 5 }).reshape(3, 1);
        var m = HtgParameters.EmaMaxima(lo, hi, 0.5);
        Assert.That(m.item<double>(), Is.EqualTo(1.0).Within(1e-12));
        var reversed = HtgParameters.EmaMaxima(lo.flip(0), hi.flip(0), 0.5);
        Assert.That(reversed.item<double>(), Is.EqualTo(2.0).Within(1e-12), "the order matters: the last step weighs most");
        // Without the shift the EMA averages max|X_t|: 4, 1, 5 → 0.25·4 + 0.25·1 + 0.5·5 = 3.75.
        Assert.That(HtgParameters.EmaMaxima(lo, hi, 0.5, shifted: false).item<double>(), Is.EqualTo(3.75).Within(1e-12));
    }

    [Test]
    public void ScaleIsSqrtOfEmaOverWeightColumnMaximum()
    {
        using var scope = torch.NewDisposeScope();
        var m = torch.tensor(new double[] { 8, 1, 0 });
        var w = torch.tensor(new float[] { 2, -0.25f, 1, 0.5f, 0.1f, 3 }).reshape(2, 3);
        var s = HtgParameters.Scales(m, w).data<float>().ToArray();
        Assert.That(s[0], Is.EqualTo(2f).Within(1e-6)); // sqrt(8 / 2)
        Assert.That(s[1], Is.EqualTo(2f).Within(1e-6)); // sqrt(1 / 0.25)
        Assert.That(s[2], Is.EqualTo(1f), "a channel with m = 0 keeps s = 1");
    }

    [Test]
    public void ParametersFromPerStepStatistics()
    {
        using var scope = torch.NewDisposeScope();
        using var stats = new LayerStatistics("fc", 2, collectSecondMoment: false, collectStepChannels: true);
        // Channel 0 sits around +10 in steps 0–2 and around −10 in steps 3–5; channel 1 is centred.
        for (int k = 0; k < 6; k++)
        {
            float centre = k < 3 ? 10 : -10;
            var x = torch.tensor(new float[] { centre - 1 - 0.1f * k, -2, centre + 1 + 0.1f * k, 2 }).reshape(2, 2);
            stats.Add(x, new TimestepInfo(k, 6, 999 - k), 1);
        }
        var w = torch.tensor(new float[] { 1, 2, 0.5f, -4 }).reshape(2, 2);
        using var p = HtgParameters.Compute(stats, w, new HtgOptions { Groups = 2, EmaDecay = 0.5 });
        Assert.That(p.Groups.Select(g => (g.FirstStep, g.LastStep)), Is.EqualTo(new[] { (0, 2), (3, 5) }));
        Assert.That(p.Groups[0].Shift.data<float>().ToArray(), Is.EqualTo(new float[] { 10, 0 }).Within(1e-5));
        Assert.That(p.Groups[1].Shift.data<float>().ToArray(), Is.EqualTo(new float[] { -10, 0 }).Within(1e-5));
        Assert.That(p.DefaultShift!.data<float>().ToArray(), Is.EqualTo(new float[] { 0, 0 }).Within(1e-5));
        // Half-ranges of channel 0: 1 + 0.1k; EMA with α = 0.5 from k = 0 to 5; s = sqrt(m / max|W[:, 0]|) = sqrt(m / 1).
        double m0 = 1;
        for (int k = 1; k < 6; k++) m0 = 0.5 * m0 + 0.5 * (1 + 0.1 * k);
        var s = p.Scale!.data<float>().ToArray();
        Assert.That(s[0], Is.EqualTo(Math.Sqrt(m0)).Within(1e-5));
        Assert.That(s[1], Is.EqualTo(Math.Sqrt(2.0 / 4)).Within(1e-5));
    }

    [Test]
    public void WithoutPerStepExtremesItSaysWhatIsMissing()
    {
        using var stats = new LayerStatistics("fc", 2, collectSecondMoment: false);
        using var x = torch.ones(3, 2);
        stats.Add(x, new TimestepInfo(0, 1, 999), 1);
        using var w = torch.ones(2, 2);
        var e = Assert.Throws<CalibrationException>(() => HtgParameters.Compute(stats, w, new HtgOptions()));
        Assert.That(e!.Message, Does.Contain("per-channel input extremes of every sampling step"));
    }

    [Test]
    public void DefaultGroupCountIsATenthOfTheSteps()
    {
        var o = new HtgOptions();
        Assert.That(o.GroupCount(100), Is.EqualTo(10));
        Assert.That(o.GroupCount(20), Is.EqualTo(2));
        Assert.That(o.GroupCount(4), Is.EqualTo(1));
        Assert.That(new HtgOptions { Groups = 50 }.GroupCount(20), Is.EqualTo(20));
        Assert.That(new HtgOptions { Shift = false, Scale = false }.FindProblems(), Is.Not.Empty);
    }
}
