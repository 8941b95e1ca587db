using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Numerics;

/// <summary>
/// The top-<c>r</c> singular triplets of a matrix <c>A [m, n]</c>: <c>A ≈ U · diag(S) · Vh</c> with
/// <see cref="U"/> <c>[m, r]</c> and <see cref="Vh"/> <c>[r, n]</c> orthonormal and <see cref="S"/> <c>[r]</c>
/// descending. Made by <see cref="RandomizedSvd.Compute"/> or <see cref="Exact"/>. Owns its tensors.
/// </summary>
public sealed class TruncatedSvd : IDisposable
{
    internal TruncatedSvd(Tensor u, Tensor s, Tensor vh)
    {
        U = u;
        S = s;
        Vh = vh;
    }

    /// <summary>Left singular vectors <c>[m, r]</c>.</summary>
    public Tensor U { get; }

    /// <summary>Singular values <c>[r]</c>, descending.</summary>
    public Tensor S { get; }

    /// <summary>Right singular vectors, transposed <c>[r, n]</c>.</summary>
    public Tensor Vh { get; }

    /// <summary>The rank <c>r</c>.</summary>
    public long Rank => S.shape[0];

    /// <summary><c>U · diag(S) · Vh</c> <c>[m, n]</c> (a new tensor): the rank-<c>r</c> approximation.</summary>
    public Tensor Reconstruct()
    {
        using var scope = torch.NewDisposeScope();
        return (U * S.unsqueeze(0)).mm(Vh).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The exact top-<paramref name="rank"/> triplets from the full SVD (<c>torch.linalg.svd</c>), computed in
    /// <paramref name="dtype"/> (float32 or float64) on <paramref name="a"/>'s device: the reference the randomized
    /// version is tested against, and the choice when its cost does not matter.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="a"/> is not 2-D, <paramref name="rank"/> is out of [0, min(m, n)], or the dtype is not float32/float64.</exception>
    public static TruncatedSvd Exact(Tensor a, int rank, ScalarType dtype = ScalarType.Float64)
    {
        Check(a, rank, dtype);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (u, s, vh) = torch.linalg.svd(a.detach().to(dtype), fullMatrices: false);
        return Keep(u[.., ..rank], s[..rank], vh[..rank, ..]);
    }

    internal static void Check(Tensor a, int rank, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (a.Dimensions != 2) throw new ArgumentException($"expected a matrix, got shape [{string.Join(", ", a.shape)}].", nameof(a));
        long max = Math.Min(a.shape[0], a.shape[1]);
        if (rank < 0 || rank > max) throw new ArgumentException($"rank {rank} must be in [0, {max}] for a {a.shape[0]}×{a.shape[1]} matrix.", nameof(rank));
        if (dtype is not (ScalarType.Float32 or ScalarType.Float64)) throw new ArgumentException($"compute dtype {dtype} must be Float32 or Float64.", nameof(dtype));
    }

    /// <summary>Contiguous copies detached from the caller's dispose scope.</summary>
    internal static TruncatedSvd Keep(Tensor u, Tensor s, Tensor vh) =>
        new(u.contiguous().clone().DetachFromDisposeScope(), s.contiguous().clone().DetachFromDisposeScope(), vh.contiguous().clone().DetachFromDisposeScope());

    /// <inheritdoc />
    public void Dispose()
    {
        U.Dispose();
        S.Dispose();
        Vh.Dispose();
    }
}
