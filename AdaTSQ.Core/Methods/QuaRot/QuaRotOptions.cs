using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QuaRot;

/// <summary>
/// Options of <see cref="QuaRotTransform"/> (QuaRot, Ashkboos et al., 2024, arXiv 2404.00456). The defaults rotate
/// every layer whose activations are quantized with QuaRot's randomized Hadamard over all its input channels.
/// </summary>
public sealed record QuaRotOptions
{
    /// <summary>
    /// How the Hadamard matrix is built. Default <see cref="HadamardConstruction.Kronecker"/>: one matrix over all K
    /// channels, as QuaRot does, so that an outlier channel is spread over all K channels (its share of each drops by
    /// √K); it exists for every DiT width (192 = 12·16, 768 = 12·64, 1152 = 36·32, 4608 = 36·128). Use
    /// <see cref="HadamardConstruction.BlockDiagonal"/> for widths without a Kronecker construction, or to bound the
    /// mixing to blocks of <see cref="BlockSize"/>.
    /// </summary>
    public HadamardConstruction Construction { get; init; } = HadamardConstruction.Kronecker;

    /// <summary>The block size b of <see cref="HadamardConstruction.BlockDiagonal"/>: a power of two dividing each rotated layer's K (default 64).</summary>
    public int BlockSize { get; init; } = 64;

    /// <summary>
    /// Multiply the input by a random ±1 diagonal D before H (QuaRot's randomized Hadamard; default true). Without it,
    /// an input close to a Hadamard row — e.g. a token whose channels share one large offset, as the shift of a DiT's
    /// adaLN modulation can make — is rotated into a single channel, creating the outlier the rotation should remove.
    /// </summary>
    public bool RandomSigns { get; init; } = true;

    /// <summary>The seed of D (default 0); every layer uses the same seed (its own K).</summary>
    public int Seed { get; init; }

    /// <summary>Rotate only the quantized layers whose dotted names match one of these globs (default: empty = all).</summary>
    public IReadOnlyList<string> Layers { get; init; } = [];

    /// <summary>Never rotate the layers whose names match one of these globs.</summary>
    public IReadOnlyList<string> ExcludeLayers { get; init; } = [];

    /// <summary>
    /// Also rotate layers whose activations are not quantized (weight-only configs; default false). QuaRot's
    /// rotations are for activation outliers; for weight-only quantization they only make the weight more incoherent.
    /// </summary>
    public bool WeightOnlyLayers { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (!Enum.IsDefined(Construction)) p.Add($"QuaRot construction {Construction} is not one of {string.Join(", ", Enum.GetNames<HadamardConstruction>())}.");
        if (Construction == HadamardConstruction.BlockDiagonal && (BlockSize < 2 || !Hadamard.IsPowerOfTwo(BlockSize)))
            p.Add($"QuaRot block size {BlockSize} must be a power of two ≥ 2.");
        if (Layers is null || ExcludeLayers is null) p.Add("QuaRot Layers and ExcludeLayers must not be null.");
        else
        {
            try { _ = new LayerSelector(Layers, ExcludeLayers); }
            catch (ArgumentException e) { p.Add($"QuaRot layer patterns: {e.Message}"); }
        }
        return p;
    }
}
