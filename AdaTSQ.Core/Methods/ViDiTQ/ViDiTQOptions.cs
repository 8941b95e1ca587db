using AdaTSQ.Methods.QuaRot;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// Options of ViDiT-Q's static–dynamic channel balancing (<see cref="ChannelBalancingTransform"/>; Zhao et al., ICLR 2025,
/// arXiv 2406.02540) and, optionally, its metric-decoupled mixed precision (<see cref="MixedPrecision"/>). The defaults
/// smooth with α = 0.5 per two equal groups of sampling steps and then apply QuaRot's randomized Hadamard rotation.
/// </summary>
public sealed record ViDiTQOptions
{
    /// <summary>
    /// Migration strength α ∈ [0, 1] of the smoothing factors <c>s_j = max|X_j|^α / max|W_j|^(1−α)</c> (default 0.5,
    /// SmoothQuant's). ViDiT-Q's code sweeps α per model (its OpenSORA W4A8 config uses 0.11).
    /// </summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>
    /// Number of equal groups of consecutive sampling steps that get their own smoothing factors, from the channel maxima
    /// of their own steps (default 2, as the released W4A8 config of ViDiT-Q's code, which splits the 1000 timesteps in two
    /// halves). Each group costs one more quantized copy of every weight version. 1 = one set of factors for all steps
    /// (SmoothQuant); the sampler's step count = one set per step (the paper's timestep-wise balancing).
    /// </summary>
    public int TimestepGroups { get; init; } = 2;

    /// <summary>
    /// The Hadamard rotation after smoothing, for the dynamic (per-token, per-sample) outliers (default: QuaRot's
    /// randomized Kronecker Hadamard over all input channels, seed 0, on every layer with quantized activations);
    /// null = smoothing only (the ViDiT-Q code's released configs, which predate the rotation of the ICLR version).
    /// </summary>
    public QuaRotOptions? Rotation { get; init; } = new();

    /// <summary>
    /// The metric-decoupled mixed precision run after quantization (default null: every layer keeps the builder's
    /// Weights(...)/Activations(...)). See <see cref="ViDiTQMixedPrecisionOptions"/>.
    /// </summary>
    public ViDiTQMixedPrecisionOptions? MixedPrecision { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (!(Alpha >= 0 && Alpha <= 1)) p.Add($"ViDiT-Q α {Alpha} must be in [0, 1].");
        if (TimestepGroups < 1) p.Add($"ViDiT-Q TimestepGroups {TimestepGroups} must be at least 1.");
        if (Rotation is not null) p.AddRange(Rotation.FindProblems().Select(x => $"ViDiT-Q rotation: {x}"));
        if (MixedPrecision is not null) p.AddRange(MixedPrecision.FindProblems().Select(x => $"ViDiT-Q mixed precision: {x}"));
        return p;
    }
}
