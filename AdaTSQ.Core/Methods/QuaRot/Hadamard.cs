using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.QuaRot;

/// <summary>
/// Hadamard matrices: <c>n × n</c> matrices of ±1 with <c>H·Hᵀ = n·I</c>, the rotations of QuaRot (Ashkboos et al.,
/// 2024, arXiv 2404.00456) once divided by <c>√n</c>. Three constructions, enough for every layer width of a DiT:
/// <list type="bullet">
/// <item>Sylvester for <c>n = 2^k</c>: <c>H_{2n} = [[H_n, H_n], [H_n, −H_n]]</c> (symmetric; applied with the fast
/// Walsh–Hadamard transform, <see cref="FastWalshHadamard"/>).</item>
/// <item>Paley I for <c>n = q + 1</c>, <c>q</c> a prime ≡ 3 (mod 4): <c>H = I + [[0, 1ᵀ], [−1, Q]]</c> with <c>Q</c> the
/// Jacobsthal matrix <c>Q_ij = χ(j − i)</c> (χ the quadratic character mod q) — orders 4, 8, 12, 20, 24, 32, 44, 48, 60, …</item>
/// <item>Paley II for <c>n = 2(q + 1)</c>, <c>q</c> a prime ≡ 1 (mod 4): the symmetric conference matrix
/// <c>C = [[0, 1ᵀ], [1, Q]]</c> with each 0 replaced by <c>[[1, −1], [−1, −1]]</c> and each ±1 by ±<c>[[1, 1], [1, −1]]</c>
/// — orders 12, 28, 36, 60, 76, 108, …</item>
/// </list>
/// A width <c>K = m · 2^k</c> is rotated by <c>H_m ⊗ H_{2^k}</c> with the smallest such <c>m</c> that one of these
/// builds (<see cref="Factor"/>): 192 = 12·16, 768 = 12·64, 1152 = 36·32, 4608 = 36·128.
/// </summary>
public static class Hadamard
{
    /// <summary>True when <paramref name="n"/> is a positive power of two (1 included).</summary>
    public static bool IsPowerOfTwo(long n) => n > 0 && (n & (n - 1)) == 0;

    /// <summary>
    /// The ±1 Hadamard matrix of order <paramref name="order"/> (float64 <c>[order, order]</c>, on the CPU) by Sylvester
    /// (powers of two) or Paley I/II (with a prime q), or null when none of them builds that order.
    /// </summary>
    public static Tensor? TryCreate(int order)
    {
        if (order <= 0) return null;
        if (IsPowerOfTwo(order)) return Sylvester(order);
        if (order % 4 != 0) return null;
        if (IsPrime(order - 1) && (order - 1) % 4 == 3) return PaleyI(order - 1);
        if (IsPrime(order / 2 - 1) && (order / 2 - 1) % 4 == 1) return PaleyII(order / 2 - 1);
        return null;
    }

    /// <summary>
    /// Splits <paramref name="size"/> = <c>m · 2^k</c> with <c>m</c> the smallest order (1 for a power of two) that
    /// <see cref="TryCreate"/> builds; false when there is none (e.g. an odd size above 1, or 2·13 = 26).
    /// </summary>
    public static bool Factor(long size, out int m, out long powerOfTwo)
    {
        m = 0;
        powerOfTwo = 0;
        if (size <= 0) return false;
        long odd = size;
        while (odd % 2 == 0) odd /= 2;
        for (long candidate = odd; candidate <= size && candidate <= int.MaxValue; candidate *= 2)
        {
            if (size % candidate != 0) break;
            if (candidate != 1 && candidate % 4 != 0) continue;
            using var h = TryCreate((int)candidate);
            if (h is null) continue;
            m = (int)candidate;
            powerOfTwo = size / candidate;
            return true;
        }
        return false;
    }

    /// <summary>
    /// The dense orthonormal Kronecker Hadamard matrix <c>(H_m ⊗ H_{2^k}) / √K</c> of <see cref="Factor"/> (float64
    /// <c>[K, K]</c>, CPU): the reference that the fast transform is tested against. O(K²) memory.
    /// </summary>
    /// <exception cref="ArgumentException">No construction for <paramref name="size"/>.</exception>
    public static Tensor Orthonormal(long size)
    {
        if (!Factor(size, out int m, out long p))
            throw new ArgumentException($"no Hadamard matrix of order {size} can be built here (m · 2^k with m a power of two, Paley I or Paley II order).", nameof(size));
        using var scope = torch.NewDisposeScope();
        var hm = TryCreate(m)!;
        var hp = Sylvester(p);
        return (torch.kron(hm, hp) / Math.Sqrt(size)).MoveToOuterDisposeScope();
    }

    /// <summary>Sylvester's ±1 Hadamard matrix of order <paramref name="n"/> (a power of two), float64.</summary>
    public static Tensor Sylvester(long n)
    {
        if (!IsPowerOfTwo(n)) throw new ArgumentException($"Sylvester's construction needs a power of two, not {n}.", nameof(n));
        using var scope = torch.NewDisposeScope();
        var h = torch.ones(1, 1, dtype: ScalarType.Float64);
        var h2 = torch.tensor(new double[] { 1, 1, 1, -1 }).reshape(2, 2);
        for (long k = 1; k < n; k *= 2) h = torch.kron(h2, h);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>Paley construction I: the ±1 Hadamard matrix of order <c>q + 1</c> for a prime <paramref name="q"/> ≡ 3 (mod 4), float64.</summary>
    public static Tensor PaleyI(int q)
    {
        if (!IsPrime(q) || q % 4 != 3) throw new ArgumentException($"Paley I needs a prime q ≡ 3 (mod 4), not {q}.", nameof(q));
        int n = q + 1;
        var chi = QuadraticCharacter(q);
        var h = new double[n * n];
        // S = [[0, 1ᵀ], [−1, Q]] is skew-symmetric; H = I + S.
        for (int j = 1; j < n; j++)
        {
            h[j] = 1;
            h[j * n] = -1;
        }
        for (int i = 0; i < q; i++)
            for (int j = 0; j < q; j++)
                h[(i + 1) * n + j + 1] = chi[((j - i) % q + q) % q];
        for (int i = 0; i < n; i++) h[i * n + i] += 1;
        return torch.tensor(h).reshape(n, n);
    }

    /// <summary>Paley construction II: the ±1 Hadamard matrix of order <c>2(q + 1)</c> for a prime <paramref name="q"/> ≡ 1 (mod 4), float64.</summary>
    public static Tensor PaleyII(int q)
    {
        if (!IsPrime(q) || q % 4 != 1) throw new ArgumentException($"Paley II needs a prime q ≡ 1 (mod 4), not {q}.", nameof(q));
        int c = q + 1, n = 2 * c;
        var chi = QuadraticCharacter(q);
        // The symmetric conference matrix C = [[0, 1ᵀ], [1, Q]].
        int Conference(int i, int j) => i == 0 && j == 0 ? 0 : i == 0 || j == 0 ? 1 : chi[((j - i) % q + q) % q];
        var h = new double[n * n];
        for (int i = 0; i < c; i++)
            for (int j = 0; j < c; j++)
            {
                int v = Conference(i, j);
                // 0 → [[1, −1], [−1, −1]]; ±1 → ±[[1, 1], [1, −1]].
                double a = v == 0 ? 1 : v, b = v == 0 ? -1 : v, d = v == 0 ? -1 : -v;
                h[2 * i * n + 2 * j] = a;
                h[2 * i * n + 2 * j + 1] = b;
                h[(2 * i + 1) * n + 2 * j] = b;
                h[(2 * i + 1) * n + 2 * j + 1] = d;
            }
        return torch.tensor(h).reshape(n, n);
    }

    // χ(a) for a = 0…q−1: 0 at 0, 1 for a non-zero square mod q, −1 otherwise.
    private static int[] QuadraticCharacter(int q)
    {
        var chi = Enumerable.Repeat(-1, q).ToArray();
        chi[0] = 0;
        for (long x = 1; x < q; x++) chi[x * x % q] = 1;
        return chi;
    }

    private static bool IsPrime(long n)
    {
        if (n < 2) return false;
        for (long d = 2; d * d <= n; d++)
            if (n % d == 0) return false;
        return true;
    }
}
