using AdaTSQ.Abstractions;

namespace AdaTSQ.Policies;

/// <summary>
/// Maps a sampler's step onto the steps of a policy made for another step count, by position in the
/// trajectory: step <c>k</c> of <c>n</c> becomes <c>round(k/(n−1)·(N−1))</c> of <c>N</c> (halves away from zero),
/// so the first and last steps always meet. Same step counts map to themselves.
/// </summary>
internal static class StepMapping
{
    /// <summary>The index, in 0…<paramref name="policySteps"/>−1, that sampler step <paramref name="step"/> uses.</summary>
    public static int ToPolicyStep(TimestepInfo step, int policySteps)
    {
        if (step.StepCount == policySteps) return step.StepIndex;
        if (policySteps == 1 || step.StepCount <= 1) return 0;
        return (int)Math.Round(step.Progress * (policySteps - 1), MidpointRounding.AwayFromZero);
    }

    /// <summary>The config a layer uses outside any step: its most precise one (highest weight bits, then activation bits).</summary>
    public static Quantization.LayerQuantConfig MostPrecise(IEnumerable<Quantization.LayerQuantConfig> configs) =>
        configs.OrderByDescending(c => c.WeightBits).ThenByDescending(c => c.ActivationBits).First();
}
