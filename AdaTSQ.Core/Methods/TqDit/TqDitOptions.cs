namespace AdaTSQ.Methods.TqDit;

/// <summary>
/// Options of TQ-DiT (Hwang et al., "TQ-DiT: Efficient Time-Aware Quantization for Diffusion Transformers", arXiv 2502.04056):
/// the Hessian-guided step search (HO) over a grid of candidate steps with alternating weight and activation rounds, and
/// time-grouped activation steps (TGQ). The defaults follow the paper and, where the paper is silent, the reference code
/// (github.com/zerohye/TQ-DiT @2ec54ed, read only, nothing ported); see docs/tqdit.md.
/// </summary>
public sealed record TqDitOptions
{
    /// <summary>Lower end α of the candidate grid <c>Δ_i = (α + i(β−α)/n)·Δ0</c>. Default 0.01 (paper / reference).</summary>
    public double Alpha { get; init; } = 0.01;

    /// <summary>Upper end β of the candidate grid. Default 1.2 (paper / reference).</summary>
    public double Beta { get; init; } = 1.2;

    /// <summary>Number of grid intervals n (n + 1 candidates). Default 100 (paper / reference).</summary>
    public int GridSteps { get; init; } = 100;

    /// <summary>Alternating search rounds; each round searches every weight step, then every activation step. Default 3.</summary>
    public int Rounds { get; init; } = 3;

    /// <summary>
    /// TGQ: number G of uniform timestep groups, each with its own activation step; a sampling step with respaced timestep
    /// index <c>t = S − 1 − stepIndex</c> of S steps belongs to group <c>min(t·G / S, G − 1)</c> (integer division, the paper's
    /// <c>min(t // (T/G), G − 1)</c>). Default 10 (the reference's G over its 250 steps); capped at the number of
    /// calibration steps. 1 turns TGQ off.
    /// </summary>
    public int TimestepGroups { get; init; } = 10;

    /// <summary>
    /// Calibration rows (tokens) kept per layer and per model call for the search, drawn without replacement with
    /// <see cref="Seed"/>. Default 128. The search's cost is linear in the rows kept.
    /// </summary>
    public int RowsPerCall { get; init; } = 128;

    /// <summary>Seed of the row sampling. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>
    /// MRQ for the input of <c>mlp.fc2</c> (post-GELU, <see cref="TqDitPostGeluQuantizer.AppliesTo"/>) when activations are
    /// quantized: negative inputs on the fixed step <c>0.16997/2^(k−1)</c>, non-negative inputs on a positive step searched like
    /// the other activation steps (same grid, same gradient-weighted error, one per TGQ group), set as the layer's input
    /// quantizer (<see cref="TqDitPostGeluQuantizer"/>; fake quantization only, the integer kernels refuse it). Default false
    /// (fc2's input gets the symmetric per-tensor step like every other layer).
    /// </summary>
    public bool PostGeluMultiRegion { get; init; }

    /// <summary>
    /// Quantize the attention matmul operands (Q·Kᵀ, softmax·V, per head, MRQ on the softmax output). Not implemented
    /// (the DiT's attention has no quantization hook yet): true makes <c>Build()</c> fail. Default false.
    /// </summary>
    public bool QuantizeAttentionMatmuls { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) p.Add($"TQ-DiT α {Alpha} must be a finite positive number.");
        if (!(Beta >= Alpha) || double.IsInfinity(Beta)) p.Add($"TQ-DiT β {Beta} must be finite and at least α {Alpha}.");
        if (GridSteps < 1) p.Add($"TQ-DiT grid steps {GridSteps} must be at least 1.");
        if (Rounds < 1) p.Add($"TQ-DiT rounds {Rounds} must be at least 1.");
        if (TimestepGroups < 1) p.Add($"TQ-DiT timestep groups {TimestepGroups} must be at least 1.");
        if (RowsPerCall < 1) p.Add($"TQ-DiT rows per call {RowsPerCall} must be at least 1.");
        if (QuantizeAttentionMatmuls) p.Add("TQ-DiT's attention matmul quantization (Q·Kᵀ, softmax·V) is not implemented: set QuantizeAttentionMatmuls = false.");
        return p;
    }

    /// <summary>
    /// The TGQ group of sampling step <paramref name="stepIndex"/> of <paramref name="stepCount"/> with <paramref name="groups"/>
    /// groups: <c>min(t·G / S, G − 1)</c> with <c>t = S − 1 − stepIndex</c> (the respaced timestep index; sampling runs t from
    /// S − 1 down to 0).
    /// </summary>
    public static int GroupOf(int stepIndex, int stepCount, int groups)
    {
        if (stepCount <= 0) throw new ArgumentOutOfRangeException(nameof(stepCount), $"step count {stepCount} must be positive.");
        if (stepIndex < 0 || stepIndex >= stepCount) throw new ArgumentOutOfRangeException(nameof(stepIndex), $"step {stepIndex} is outside 0…{stepCount - 1}.");
        if (groups < 1) throw new ArgumentOutOfRangeException(nameof(groups), $"groups {groups} must be at least 1.");
        int t = stepCount - 1 - stepIndex;
        return (int)Math.Min((long)t * groups / stepCount, groups - 1);
    }
}
