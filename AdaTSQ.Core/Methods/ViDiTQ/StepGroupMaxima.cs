using AdaTSQ.Calibration;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// The per-channel input maxima <c>max|X_j|</c> of groups of consecutive sampling steps, from calibration statistics that
/// kept per-step channel extremes (<see cref="CalibrationRequirements.PerStepChannelExtremes"/>): what ViDiT-Q's
/// timestep-aware smoothing computes its factors from. Steps are split as the static ranges per timestep group are:
/// <c>groups</c> equal runs of the steps 0…(last calibrated step).
/// </summary>
public static class StepGroupMaxima
{
    /// <summary>
    /// The <paramref name="groups"/> step groups <c>(first, last)</c> of <paramref name="steps"/> steps (at most one per step).
    /// </summary>
    public static IReadOnlyList<(int FirstStep, int LastStep)> Split(int steps, int groups)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(groups, 1);
        int n = Math.Min(groups, steps);
        return Enumerable.Range(0, n).Select(g => (g * steps / n, (g + 1) * steps / n - 1)).ToList();
    }

    /// <summary>
    /// For each of <paramref name="groups"/> step groups that saw calibration input: its steps and <c>max|X_j|</c> over
    /// them (float32 <c>[in]</c>, owned by the caller). Empty when <paramref name="groups"/> ≤ 1.
    /// </summary>
    /// <exception cref="CalibrationException">The statistics kept no per-step channel extremes.</exception>
    public static IReadOnlyList<(int FirstStep, int LastStep, Tensor ChannelAbsMax)> Compute(LayerStatistics statistics, int groups)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        if (groups <= 1) return [];
        var perStep = statistics.StepChannels;
        if (perStep.Count == 0)
            throw new CalibrationException($"layer '{statistics.LayerName}': ViDiT-Q's smoothing per timestep group needs the per-step channel extremes from calibration, but none were kept.");
        var result = new List<(int, int, Tensor)>();
        using var noGrad = torch.no_grad();
        foreach (var (first, last) in Split(perStep.Keys.Max() + 1, groups))
        {
            var seen = perStep.Where(p => p.Key >= first && p.Key <= last).Select(p => p.Value).ToList();
            if (seen.Count == 0) continue;
            using var scope = torch.NewDisposeScope();
            var absMax = seen.Select(m => torch.maximum(m.Min.abs(), m.Max.abs())).Aggregate(torch.maximum);
            result.Add((first, last, absMax.to(ScalarType.Float32).MoveToOuterDisposeScope()));
        }
        return result;
    }
}
