using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.QuaRot;

/// <summary>
/// QuaRot's online rotation (Ashkboos et al., 2024, arXiv 2404.00456) of K input channels: the orthonormal
/// <c>R = H·D / √n</c> with <c>H</c> a Hadamard matrix (<see cref="HadamardConstruction.Kronecker"/>: <c>H_m ⊗ H_{2^k}</c>
/// over all K channels, n = K; <see cref="HadamardConstruction.BlockDiagonal"/>: Sylvester blocks of size n = b) and
/// <c>D</c> a seeded random ±1 diagonal (the randomized Hadamard transform) or <c>I</c>. <see cref="Rotate"/> runs the
/// fast Walsh–Hadamard transform on the power-of-two factor and a small dense product by <c>H_m</c>:
/// O(K log K + K·m) per row.
/// </summary>
public sealed class HadamardRotation : IInputRotation
{
    private readonly Tensor? _hm;     // ±1 [m, m] (Kronecker, m > 1), float32
    private readonly Tensor? _signs;  // ±1 [K], float32; null without random signs

    private HadamardRotation(long size, HadamardConstruction construction, int m, long block, Tensor? hm, Tensor? signs, int? seed)
    {
        Size = size;
        Construction = construction;
        Order = m;
        Block = block;
        _hm = hm;
        _signs = signs;
        Seed = seed;
    }

    /// <summary>
    /// Builds the rotation of <paramref name="size"/> channels. With <paramref name="seed"/> null, <c>D = I</c> (plain
    /// Hadamard); otherwise D's signs are drawn from <c>new Random(seed)</c>.
    /// </summary>
    /// <param name="size">K, the number of channels.</param>
    /// <param name="construction">Kronecker over all channels, or block-diagonal.</param>
    /// <param name="blockSize">The block size b of <see cref="HadamardConstruction.BlockDiagonal"/>: a power of two dividing K.</param>
    /// <param name="seed">The seed of the random ±1 diagonal, or null for none.</param>
    /// <exception cref="ArgumentException">No Hadamard matrix of that kind exists here for <paramref name="size"/>.</exception>
    public static HadamardRotation Create(long size, HadamardConstruction construction = HadamardConstruction.Kronecker, int blockSize = 64, int? seed = 0)
    {
        if (size <= 0) throw new ArgumentException($"a rotation needs a positive size, not {size}.", nameof(size));
        int m;
        long block;
        if (construction == HadamardConstruction.BlockDiagonal)
        {
            if (!Hadamard.IsPowerOfTwo(blockSize) || size % blockSize != 0)
                throw new ArgumentException($"block-diagonal Hadamard: block size {blockSize} must be a power of two dividing {size}.", nameof(blockSize));
            (m, block) = (1, blockSize);
        }
        else if (construction == HadamardConstruction.Kronecker)
        {
            if (!Hadamard.Factor(size, out m, out block))
                throw new ArgumentException($"no Hadamard matrix of order {size} can be built here ({size} is not m·2^k with m a power of two, Paley I or Paley II order): use the block-diagonal construction or leave the layer out.", nameof(size));
        }
        else throw new ArgumentException($"unknown Hadamard construction {construction}.", nameof(construction));
        using var scope = torch.NewDisposeScope();
        var hm = m > 1 ? Hadamard.TryCreate(m)!.to(ScalarType.Float32).MoveToOuterDisposeScope() : null;
        Tensor? signs = null;
        if (seed is { } s)
        {
            var random = new Random(s);
            signs = torch.tensor(Enumerable.Range(0, checked((int)size)).Select(_ => random.Next(2) == 0 ? -1f : 1f).ToArray()).MoveToOuterDisposeScope();
        }
        return new HadamardRotation(size, construction, m, block, hm, signs, seed);
    }

    /// <inheritdoc />
    public long Size { get; }

    /// <summary>How the Hadamard matrix is built.</summary>
    public HadamardConstruction Construction { get; }

    /// <summary>m: the order of the non-power-of-two Kronecker factor (1 when K is a power of two or block-diagonal).</summary>
    public int Order { get; }

    /// <summary>The power-of-two size handled by the fast transform: <c>2^k</c> of <c>H_m ⊗ H_{2^k}</c>, or the block size.</summary>
    public long Block { get; }

    /// <summary>The seed of the random ±1 diagonal, or null when there is none.</summary>
    public int? Seed { get; }

    /// <inheritdoc />
    public string Description =>
        (Construction == HadamardConstruction.BlockDiagonal ? $"block-diagonal Hadamard {Size / Block}×{Block}"
            : Order > 1 ? $"Hadamard {Order}⊗{Block}" : $"Hadamard {Block}")
        + (Seed is { } s ? $", random signs (seed {s})" : "");

    /// <inheritdoc />
    public Tensor Rotate(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (t.Dimensions == 0 || t.shape[^1] != Size)
            throw new ArgumentException($"{Description}: input has shape [{string.Join(", ", t.shape)}], expected last dimension {Size}.", nameof(t));
        using var scope = torch.NewDisposeScope();
        var shape = t.shape;
        var x = _signs is null ? t : t * _signs.to(t.dtype, t.device);
        long factor = Size / Block;
        var y = FastWalshHadamard.Transform(x.reshape([.. shape[..^1], factor, Block]));
        if (_hm is not null) y = torch.matmul(_hm.to(t.dtype, t.device), y);
        double norm = Construction == HadamardConstruction.BlockDiagonal ? Math.Sqrt(Block) : Math.Sqrt(Size);
        return (y.reshape(shape) / norm).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public global::AdaTSQ.Kernels.FusedRotation ToFusedRotation() => new()
    {
        Signs = _signs?.detach().to(ScalarType.Float32, torch.CPU).contiguous(),
        Block = Block,
        Dense = _hm?.detach().to(ScalarType.Float32, torch.CPU).contiguous(),
        Divisor = Construction == HadamardConstruction.BlockDiagonal ? Math.Sqrt(Block) : Math.Sqrt(Size),
    };

    /// <summary>The dense matrix <c>R</c> <c>[K, K]</c> (float64, CPU) — for tests and analysis; O(K²) memory.</summary>
    public Tensor Matrix()
    {
        using var scope = torch.NewDisposeScope();
        var eye = torch.eye(Size, dtype: ScalarType.Float64, device: _signs?.device ?? _hm?.device);
        return Rotate(eye).t().cpu().contiguous().MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public IInputRotation To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new HadamardRotation(Size, Construction, Order, Block,
            _hm?.to(device, copy: true).DetachFromDisposeScope(), _signs?.to(device, copy: true).DetachFromDisposeScope(), Seed);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _hm?.Dispose();
        _signs?.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => Description;
}
