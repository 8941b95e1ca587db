using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Numerics;

/// <summary>
/// Randomized truncated SVD (Halko, Martinsson and Tropp, "Finding structure with randomness", SIAM Review 2011,
/// Algorithms 4.4 + 5.1), for TorchSharp, which has no <c>svd_lowrank</c>. For <c>A [m, n]</c> and rank <c>r</c>:
/// a seeded Gaussian test matrix <c>Ω [n, r + p]</c> (oversampling <c>p</c>), the range <c>Q = orth(A Ω)</c>,
/// <c>q</c> power iterations <c>Q ← orth(A · orth(Aᵀ Q))</c> with a QR re-orthonormalization after every product
/// (so the small singular values are not lost to rounding), then the SVD of the small matrix <c>B = Qᵀ A</c>
/// <c>[r + p, n]</c>: <c>U = Q Ũ</c>. Cost <c>O(m n (r + p)(2q + 2))</c> against <c>O(m n min(m, n))</c> for the full
/// SVD. Runs on <c>A</c>'s device; Ω is drawn on the CPU from the seed (the same Ω on every device).
/// </summary>
public static class RandomizedSvd
{
    /// <summary>The top-<paramref name="rank"/> singular triplets of <paramref name="a"/> <c>[m, n]</c>.</summary>
    /// <param name="a">The matrix (any float dtype, any device; not modified).</param>
    /// <param name="rank">r ∈ [0, min(m, n)].</param>
    /// <param name="oversampling">p ≥ 0: extra test vectors (the paper's default 10); r + p is capped at min(m, n).</param>
    /// <param name="powerIterations">q ≥ 0: power iterations (default 2), for spectra that decay slowly.</param>
    /// <param name="seed">Seed of the Gaussian test matrix.</param>
    /// <param name="dtype">Compute dtype: Float32 (default) or Float64; the result has this dtype.</param>
    /// <exception cref="ArgumentException">A bad shape, rank, oversampling, iteration count or dtype.</exception>
    public static TruncatedSvd Compute(Tensor a, int rank, int oversampling = 10, int powerIterations = 2, long seed = 0, ScalarType dtype = ScalarType.Float32)
    {
        TruncatedSvd.Check(a, rank, dtype);
        ArgumentOutOfRangeException.ThrowIfNegative(oversampling);
        ArgumentOutOfRangeException.ThrowIfNegative(powerIterations);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long m = a.shape[0], n = a.shape[1];
        var A = a.detach().to(dtype);
        if (rank == 0)
            return TruncatedSvd.Keep(torch.zeros([m, 0], dtype: dtype, device: A.device), torch.zeros([0], dtype: dtype, device: A.device), torch.zeros([0, n], dtype: dtype, device: A.device));
        long l = Math.Min(rank + (long)oversampling, Math.Min(m, n));
        using var generator = new Generator((ulong)seed);
        var omega = torch.randn([n, l], dtype: dtype, generator: generator).to(A.device);
        var Q = Orthonormal(A.mm(omega));
        for (int i = 0; i < powerIterations; i++)
        {
            var P = Orthonormal(A.t().mm(Q));
            Q = Orthonormal(A.mm(P));
        }
        var B = Q.t().mm(A);                                             // [l, n]
        var (ub, s, vh) = torch.linalg.svd(B, fullMatrices: false);
        var u = Q.mm(ub);
        return TruncatedSvd.Keep(u[.., ..rank], s[..rank], vh[..rank, ..]);
    }

    private static Tensor Orthonormal(Tensor y)
    {
        var (q, _) = torch.linalg.qr(y, torch.linalg.QRMode.Reduced);
        return q;
    }
}
