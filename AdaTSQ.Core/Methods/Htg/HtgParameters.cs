using AdaTSQ.Calibration;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Htg;

/// <summary>
/// HTG's per-layer parameters (arXiv 2503.06930, formulas from third-party ports; see docs/htg.md): the shift of each
/// timestep group, the default shift of calls outside every group, and the channel scale. Owns its tensors.
/// </summary>
public sealed class HtgParameters : IDisposable
{
    private HtgParameters(IReadOnlyList<(int FirstStep, int LastStep, Tensor Shift)> groups, Tensor? defaultShift, Tensor? scale)
    {
        Groups = groups;
        DefaultShift = defaultShift;
        Scale = scale;
    }

    /// <summary>
    /// The timestep groups, in step order: the sampling steps each covers (from its first calibrated step — 0 for the first
    /// group — to the step before the next group's first, the last group to its last calibrated step) and its shift
    /// <c>z_g = mean of z_t over the group's calibrated steps</c> <c>[in]</c> (float32). Empty without the shift.
    /// </summary>
    public IReadOnlyList<(int FirstStep, int LastStep, Tensor Shift)> Groups { get; }

    /// <summary>The shift of calls outside every group: the mean of z_t over all calibrated steps; null without the shift.</summary>
    public Tensor? DefaultShift { get; }

    /// <summary>The channel scale s <c>[in]</c> (float32, positive); null without the scale.</summary>
    public Tensor? Scale { get; }

    /// <summary>
    /// The per-step shifts <c>z_t[c] = (max_t[c] + min_t[c]) / 2</c> from per-step channel minima and maxima <c>[T, in]</c>
    /// (a new tensor <c>[T, in]</c>).
    /// </summary>
    public static Tensor StepShifts(Tensor stepMin, Tensor stepMax) => (stepMin + stepMax) * 0.5;

    /// <summary>
    /// The exponential moving average over the steps of each channel's largest value after the per-step shift,
    /// <c>max(X̃_t) = max_t − z_t = (max_t − min_t) / 2</c> (with <paramref name="shifted"/>; else the unshifted
    /// <c>max|X_t|</c>). Row 0 of <paramref name="stepMin"/>/<paramref name="stepMax"/> <c>[T, in]</c> is the first sampling
    /// step (t = T, the noisiest), the last row t = 1: the average starts at row 0, <c>m_T = max(X̃_T)</c>, and runs down to
    /// t = 1, <c>m_t = α·m_{t+1} + (1 − α)·max(X̃_t)</c>; returns m_1 <c>[in]</c> (float64).
    /// </summary>
    public static Tensor EmaMaxima(Tensor stepMin, Tensor stepMax, double decay, bool shifted = true)
    {
        using var scope = torch.NewDisposeScope();
        var lo = stepMin.to(ScalarType.Float64);
        var hi = stepMax.to(ScalarType.Float64);
        var r = shifted ? (hi - lo) * 0.5 : torch.maximum(lo.abs(), hi.abs());
        var m = r[0].clone();
        for (long t = 1; t < r.shape[0]; t++) m = m * decay + r[t] * (1 - decay);
        return m.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The channel scale <c>s[c] = sqrt(m[c] / max_j |W[j, c]|)</c> for EMA maxima <paramref name="m"/> <c>[in]</c> and the
    /// weight <c>[out, in]</c>, not normalised further (the ports disagree; see docs/htg.md). A channel whose m or weight
    /// column is zero (or whose ratio is not finite) gets s = 1. A new float32 tensor.
    /// </summary>
    public static Tensor Scales(Tensor m, Tensor weight)
    {
        using var scope = torch.NewDisposeScope();
        var wMax = weight.detach().abs().amax([0]).to(ScalarType.Float64, m.device);
        var s = (m.to(ScalarType.Float64) / wMax).sqrt();
        var valid = s.isfinite().logical_and(s > 0);
        return torch.where(valid, s, torch.ones_like(s)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// HTG's parameters of a layer with weight <paramref name="weight"/> from its calibration <paramref name="statistics"/>,
    /// which must hold per-step channel extremes (<see cref="CalibrationRequirements.PerStepChannelExtremes"/>).
    /// </summary>
    /// <exception cref="CalibrationException">No per-step channel extremes were kept.</exception>
    public static HtgParameters Compute(LayerStatistics statistics, Tensor weight, HtgOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(options);
        var perStep = statistics.StepChannels;
        if (perStep.Count == 0)
            throw new CalibrationException($"layer '{statistics.LayerName}': HTG needs the per-channel input extremes of every sampling step (a trajectory calibration source), but none were kept.");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var steps = perStep.Keys.Order().ToList();
        var lo = torch.stack(steps.Select(k => perStep[k].Min.to(ScalarType.Float32, torch.CPU)));
        var hi = torch.stack(steps.Select(k => perStep[k].Max.to(ScalarType.Float32, torch.CPU)));

        var groups = new List<(int, int, Tensor)>();
        Tensor? defaultShift = null;
        if (options.Shift)
        {
            var z = StepShifts(lo, hi);
            var runs = HtgClustering.Cluster(z, options.GroupCount(steps.Count), cancellationToken);
            for (int i = 0; i < runs.Count; i++)
            {
                var (first, last) = runs[i];
                int firstStep = i == 0 ? 0 : steps[first];
                int lastStep = i + 1 < runs.Count ? steps[runs[i + 1].First] - 1 : steps[last];
                groups.Add((firstStep, lastStep, z.narrow(0, first, last - first + 1).mean([0]).MoveToOuterDisposeScope()));
            }
            defaultShift = z.mean([0]).MoveToOuterDisposeScope();
        }
        Tensor? scale = null;
        if (options.Scale)
        {
            var m = EmaMaxima(lo, hi, options.EmaDecay, shifted: options.Shift);
            scale = Scales(m, weight.detach().cpu()).MoveToOuterDisposeScope();
        }
        return new HtgParameters(groups, defaultShift, scale);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var g in Groups) g.Shift.Dispose();
        DefaultShift?.Dispose();
        Scale?.Dispose();
    }
}
