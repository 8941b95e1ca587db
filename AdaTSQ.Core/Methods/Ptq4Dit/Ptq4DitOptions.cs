namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>The linear layers of a DiT that PTQ4DiT can balance: those whose balancing matrix folds offline, exactly.</summary>
[Flags]
public enum BalancedLayers
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary><c>blocks.N.attn.qkv</c>: <c>B⁻¹</c> folds into the block's adaLN shift and scale of the attention branch.</summary>
    AttentionQkv = 1,

    /// <summary><c>blocks.N.attn.proj</c>: <c>B⁻¹</c> folds into the rows of the value projection (the last third of qkv).</summary>
    AttentionProj = 2,

    /// <summary><c>blocks.N.mlp.fc1</c>: <c>B⁻¹</c> folds into the block's adaLN shift and scale of the MLP branch.</summary>
    MlpFc1 = 4,

    /// <summary><c>final_layer.linear</c>: <c>B⁻¹</c> folds into the final layer's adaLN shift and scale.</summary>
    FinalLinear = 8,

    /// <summary>The layers the reference code balances: qkv, proj and fc1 of every block (<c>fc2</c> and the final layer are not).</summary>
    Default = AttentionQkv | AttentionProj | MlpFc1,
}

/// <summary>
/// Options of PTQ4DiT (Wu et al., NeurIPS 2024, arXiv 2405.16005): Channel-wise Salience Balancing (CSB,
/// <see cref="SalienceBalancing"/>), Spearman's ρ-guided Salience Calibration (SSC, <see cref="SpearmanCalibration"/>) and
/// the offline re-parameterization (<see cref="DiTReparameterization"/>). The defaults follow the reference code
/// (github.com/adreamwu/PTQ4DiT, <c>models.py</c>) where it is explicit; see docs/ptq4dit.md.
/// </summary>
public sealed record Ptq4DitOptions
{
    /// <summary>Which layers are balanced (default <see cref="BalancedLayers.Default"/>: qkv, proj, fc1, as the reference code).</summary>
    public BalancedLayers Layers { get; init; } = BalancedLayers.Default;

    /// <summary>
    /// Use SSC (default true): the activation salience is <c>Σ_t η_t · s(X^(t))</c> with <c>η = softmax(−ρ)</c> over the
    /// calibration steps, ρ_t being Spearman's rank correlation between <c>s(X^(t))</c> and <c>s(W)</c>. False: CSB alone, with
    /// <c>s(X_j)</c> the maximum of <c>|X_j|</c> over all calibration data (the paper's ablation "CSB without SSC").
    /// </summary>
    public bool SalienceCalibration { get; init; } = true;

    /// <summary>
    /// Smallest salience used in <c>B_j = √(s(X_j) / s(W_j))</c> (default 1e-5, SmoothQuant's clamp): both saliences are clamped
    /// to at least this, so that a channel never seen active or a zero weight column gives a finite, positive factor. The
    /// reference code adds 1e-8 to <c>s(W)</c> only.
    /// </summary>
    public double SalienceFloor { get; init; } = 1e-5;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Layers == BalancedLayers.None) p.Add("PTQ4DiT balances no layer: Layers is None.");
        if ((Layers & ~(BalancedLayers.Default | BalancedLayers.FinalLinear)) != 0) p.Add($"PTQ4DiT Layers {(int)Layers} has unknown flags.");
        if (!(SalienceFloor > 0) || double.IsInfinity(SalienceFloor)) p.Add($"PTQ4DiT salience floor {SalienceFloor} must be a finite positive number.");
        return p;
    }
}
