namespace AdaTSQ.Methods.D2Quant;

/// <summary>
/// Options of D²Quant (Yan et al., "D²Quant", arXiv 2602.02546): a weight-only method with a dual-scale quantizer (DSQ,
/// <c>W ≈ Q̂ · diag(s_c)</c>, a per-input-channel scale beside the per-group scale) and a deviation-aware correction (DAC,
/// the mean deviation of the post-attention norm's output between the float and the quantized model, added back as a bias).
/// No code is released; every default below is an assumption documented in <c>docs/d2quant.md</c>.
/// </summary>
public sealed record D2QuantOptions
{
    /// <summary>
    /// Alternating rounds of DSQ (each: refit the per-input-channel scale s_c by least squares, then re-quantize W / s_c).
    /// Default 15 — the number the issue quotes from the paper's figure, unverified.
    /// </summary>
    public int Rounds { get; init; } = 15;

    /// <summary>
    /// Glob patterns (as in <see cref="Quantization.LayerSelector"/>) of the layers that get DSQ; the other quantized layers get
    /// the plan's quantizer (RTN by default). Default: the MLP down-projection, <c>*mlp.fc2</c>, as in the paper (LLM
    /// <c>down_proj</c>). <c>["*"]</c> gives every quantized layer DSQ.
    /// </summary>
    public IReadOnlyList<string> DsqLayers { get; init; } = ["*mlp.fc2"];

    /// <summary>Whether DSQ runs at all (false: the selected layers get the plan's quantizer; for ablations). Default true.</summary>
    public bool Dsq { get; init; } = true;

    /// <summary>
    /// Whether the deviation-aware correction runs (needs the model and calibration data, see
    /// <c>UseD2Quant</c>). Default true.
    /// </summary>
    public bool Dac { get; init; } = true;

    /// <summary>
    /// Whether DAC measures each block's deviation with the corrections of the earlier blocks already in place (one
    /// quantized calibration pass per block), rather than all blocks from one quantized pass (two passes in all).
    /// Default true: the correction of block k then answers what block k really sees.
    /// </summary>
    public bool SequentialCorrection { get; init; } = true;

    /// <summary>DSQ stops early when a round lowers the relative reconstruction error by less than this. Default 1e-6.</summary>
    public double Tolerance { get; init; } = 1e-6;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Rounds < 0) p.Add($"D²Quant rounds {Rounds} must not be negative.");
        if (DsqLayers is null || DsqLayers.Count == 0 || DsqLayers.Any(string.IsNullOrWhiteSpace))
            p.Add("D²Quant DSQ layer patterns must be non-empty globs (e.g. \"*mlp.fc2\", or \"*\" for all).");
        if (!(Tolerance >= 0) || double.IsInfinity(Tolerance)) p.Add($"D²Quant tolerance {Tolerance} must be finite and not negative.");
        return p;
    }
}
