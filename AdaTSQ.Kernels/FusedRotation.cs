using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>
/// An orthogonal Hadamard rotation of the input channels in the form the native prologue runs it (ABI 5; QuaRot's
/// online rotation, as <c>AdaTSQ.Methods.QuaRot.HadamardRotation</c> defines it): <c>x ← x · Signs</c>; the row cut into
/// <c>K / Block</c> segments of <see cref="Block"/> (a power of two), each given the unnormalized fast Walsh–Hadamard
/// transform (Sylvester order); with <see cref="Dense"/> <c>H_m</c> (then <c>K = m · Block</c>: <c>H_m ⊗ H_Block</c>)
/// segment i becomes <c>Σ_j H_m[i, j] · segment j</c>; then every element is divided by <see cref="Divisor"/>.
/// Float32 CPU contiguous tensors.
/// </summary>
public sealed class FusedRotation
{
    /// <summary>±1 per channel <c>[K]</c>, applied first, or null.</summary>
    public Tensor? Signs { get; init; }

    /// <summary>The power-of-two segment of the fast transform (<c>2^k</c> of <c>H_m ⊗ H_{2^k}</c>, or the block size).</summary>
    public long Block { get; init; }

    /// <summary><c>H_m</c> <c>[m, m]</c> (±1) with <c>m = K / Block</c>, or null (block-diagonal, or K a power of two).</summary>
    public Tensor? Dense { get; init; }

    /// <summary>The divisor of the result: <c>√K</c> (Kronecker) or <c>√Block</c> (block-diagonal).</summary>
    public double Divisor { get; init; }

    /// <summary>The same rotation in TorchSharp ops over the last dimension of <paramref name="x"/> (a new tensor).</summary>
    public Tensor Compose(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = torch.NewDisposeScope();
        var shape = x.shape;
        long k = shape[^1];
        var y = (Signs is null ? x : x * Signs).reshape(-1, k / Block, Block);
        for (long h = 1; h < Block; h *= 2)
        {
            var pairs = y.reshape(-1, k / Block, Block / (2 * h), 2, h);
            var a = pairs.select(3, 0);
            var b = pairs.select(3, 1);
            y = torch.stack([a + b, a - b], 3).reshape(-1, k / Block, Block);
        }
        if (Dense is not null) y = torch.matmul(Dense, y);
        return (y.reshape(shape) / (float)Divisor).MoveToOuterDisposeScope();
    }

    /// <summary>Checks the rotation against K inputs (<see cref="ArgumentException"/>).</summary>
    internal void Validate(long k, string what)
    {
        if (Block < 1 || (Block & (Block - 1)) != 0 || k % Block != 0)
            throw new ArgumentException($"{what}: Rotation.Block = {Block} must be a power of two dividing K = {k}.", nameof(Block));
        if (!(Divisor > 0) || !double.IsFinite(Divisor) || !float.IsFinite((float)Divisor))
            throw new ArgumentException($"{what}: Rotation.Divisor = {Divisor} must be positive and finite.", nameof(Divisor));
        if (Signs is not null)
        {
            TorchIntegerGemm.CheckCpuContiguous(Signs, "Rotation.Signs", ScalarType.Float32);
            if (Signs.Dimensions != 1 || Signs.shape[0] != k)
                throw new ArgumentException($"{what}: Rotation.Signs has shape [{string.Join(", ", Signs.shape)}], expected [{k}].", nameof(Signs));
        }
        if (Dense is not null)
        {
            TorchIntegerGemm.CheckCpuContiguous(Dense, "Rotation.Dense", ScalarType.Float32);
            long m = k / Block;
            if (m < 2 || Dense.Dimensions != 2 || Dense.shape[0] != m || Dense.shape[1] != m)
                throw new ArgumentException($"{what}: Rotation.Dense has shape [{string.Join(", ", Dense.shape)}], expected [{m}, {m}] (K / Block, at least 2).", nameof(Dense));
        }
    }
}
