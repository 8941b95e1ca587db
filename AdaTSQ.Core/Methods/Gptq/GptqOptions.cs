using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.Gptq;

/// <summary>Options of <see cref="GptqQuantizer"/>; the defaults are those of the reference <c>gptq.py</c>.</summary>
public sealed record GptqOptions
{
    /// <summary>Columns quantized together before the lazy update of the rest (reference: 128).</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>Damping added to the diagonal: PercDamp · mean(diag H) (reference: 0.01).</summary>
    public double PercDamp { get; init; } = 0.01;

    /// <summary>Quantize columns in order of decreasing diag(H) ("act-order"); with groups, group parameters are fixed up front (static groups).</summary>
    public bool ActOrder { get; init; }

    /// <summary>
    /// The MSE clipping search for each group's range (reference: <c>mse=True</c>); null (default) = the
    /// plain min/max range.
    /// </summary>
    public ClipSearchOptions? ClipSearch { get; init; }

    /// <summary>How many times the damping is multiplied by 10 when H is still not positive definite.</summary>
    public int MaxDampingRetries { get; init; } = 6;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (BlockSize <= 0) p.Add($"GPTQ block size {BlockSize} must be positive.");
        if (!(PercDamp > 0) || PercDamp > 1) p.Add($"GPTQ damping {PercDamp} must be in (0, 1].");
        if (MaxDampingRetries < 0) p.Add($"GPTQ damping retries {MaxDampingRetries} must not be negative.");
        if (ClipSearch is not null) p.AddRange(ClipSearch.FindProblems());
        return p;
    }
}
