namespace AdaTSQ.Methods.Htg;

/// <summary>
/// Options of HTG, "Post-Training Quantization for Diffusion Transformer via Hierarchical Timestep Grouping" (Ding et al.,
/// arXiv 2503.06930): a per-channel shift per group of sampling steps and a per-channel scale, absorbed into the layer
/// (<see cref="HtgTransform"/>). No official code exists; the formulas follow third-party ports and are documented in
/// docs/htg.md with every assumption.
/// </summary>
public sealed record HtgOptions
{
    /// <summary>
    /// Number of timestep groups G, each with its own shift; null (default) = <see cref="GroupRatio"/> × the number of
    /// calibrated steps, rounded, at least 1. More groups than calibrated steps give one group per step.
    /// </summary>
    public int? Groups { get; init; }

    /// <summary>Groups per calibrated step when <see cref="Groups"/> is null (default 0.1: G = T/10, the ports' default).</summary>
    public double GroupRatio { get; init; } = 0.1;

    /// <summary>
    /// Decay α of the exponential moving average over the steps, from the first (noisiest, t = T) to the last (t = 1),
    /// of each channel's half-range after the per-step shift: <c>m_t = α·m_{t+1} + (1 − α)·max(X̃_t)</c> (default 0.99).
    /// </summary>
    public double EmaDecay { get; init; } = 0.99;

    /// <summary>Apply the timestep-grouped shift (default true; false = the scale alone, for ablation).</summary>
    public bool Shift { get; init; } = true;

    /// <summary>Apply the channel scale (default true; false = the shift alone, for ablation).</summary>
    public bool Scale { get; init; } = true;

    /// <summary>
    /// Glob patterns (as <c>QuantizationBuilder.Layers</c>) of the layers HTG transforms; empty (default) = every quantized
    /// layer with quantized activations. The paper applies it where it can fold it into the adaLN modulation (qkv and fc1 of
    /// each DiT block: <c>"*.attn.qkv", "*.mlp.fc1"</c>); here every layer can take it (see docs/htg.md).
    /// </summary>
    public IReadOnlyList<string> Layers { get; init; } = [];

    /// <summary>The number of groups for <paramref name="steps"/> calibrated steps (1 ≤ G ≤ steps).</summary>
    public int GroupCount(int steps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        int g = Groups ?? (int)Math.Round(steps * GroupRatio, MidpointRounding.AwayFromZero);
        return Math.Clamp(g, 1, steps);
    }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Groups is < 1) p.Add($"HTG Groups {Groups} must be at least 1 (or null for GroupRatio).");
        if (!(GroupRatio > 0 && GroupRatio <= 1)) p.Add($"HTG GroupRatio {GroupRatio} must be in (0, 1].");
        if (!(EmaDecay >= 0 && EmaDecay < 1)) p.Add($"HTG EmaDecay {EmaDecay} must be in [0, 1).");
        if (!Shift && !Scale) p.Add("HTG with neither Shift nor Scale does nothing: enable at least one.");
        if (Layers.Any(string.IsNullOrWhiteSpace)) p.Add("HTG layer patterns must not be empty.");
        return p;
    }
}
