using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.QuaRot;

/// <summary>
/// The fast Walsh–Hadamard transform: <c>x·H_n</c> over the last dimension for Sylvester's <c>H_n</c>
/// (<see cref="Hadamard.Sylvester"/>, symmetric, n a power of two) in <c>log₂ n</c> butterfly steps of one add and
/// one subtract each — O(n log n) per row instead of the O(n²) of a dense product. Unnormalized (divide by <c>√n</c>
/// for the orthonormal transform). Used by <see cref="HadamardRotation"/>, as QuaRot (arXiv 2404.00456) does.
/// </summary>
public static class FastWalshHadamard
{
    /// <summary><c>x·H_n</c> over the last dimension of <paramref name="x"/> (<c>[..., n]</c>, n a power of two): a new tensor.</summary>
    /// <exception cref="ArgumentException">The last dimension is not a power of two.</exception>
    public static Tensor Transform(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Dimensions == 0 || !Hadamard.IsPowerOfTwo(x.shape[^1]))
            throw new ArgumentException($"the fast Walsh–Hadamard transform needs a power-of-two last dimension, got shape [{string.Join(", ", x.shape)}].", nameof(x));
        long n = x.shape[^1];
        if (n == 1) return x.clone();
        var shape = x.shape;
        using var scope = torch.NewDisposeScope();
        // H_n = H_2 ⊗ … ⊗ H_2: one butterfly per factor, pairing the entries whose indices differ in one bit.
        var y = x.reshape(-1, n).contiguous();
        long rows = y.shape[0];
        for (long h = 1; h < n; h *= 2)
        {
            var pairs = y.view(rows, n / (2 * h), 2, h);
            var a = pairs.select(2, 0);
            var b = pairs.select(2, 1);
            y = torch.stack([a + b, a - b], 2).view(rows, n);
        }
        return y.reshape(shape).MoveToOuterDisposeScope();
    }
}
