namespace AdaTSQ.Kernels;

/// <summary>
/// Managed reference implementations of the integer GEMMs the native kernels provide. They are
/// slow and simple on purpose: the ground truth the native kernels are tested against.
/// Convention (as in a linear layer): <c>C[m, n] = Σ_k A[m, k] · B[n, k]</c>, A = activations
/// <c>[M, K]</c>, B = weights <c>[N, K]</c>, both row-major.
/// </summary>
public static class ReferenceGemm
{
    /// <summary>Integer GEMM with int32 accumulation: <c>C = A·Bᵀ</c>.</summary>
    public static void Int8(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, int m, int n, int k)
    {
        CheckShapes(a.Length, (long)m * k, b.Length, (long)n * k, c.Length, (long)m * n, m, n, k);
        for (int i = 0; i < m; i++)
        {
            var row = a.Slice(i * k, k);
            for (int j = 0; j < n; j++)
            {
                var col = b.Slice(j * k, k);
                int acc = 0;
                for (int p = 0; p < k; p++) acc += row[p] * col[p];
                c[i * n + j] = acc;
            }
        }
    }

    /// <summary>
    /// W8A8 GEMM with dequantization: <c>C[m, n] = sa[m] · sb[n] · Σ_k A[m, k]·B[n, k]</c>, with
    /// per-token activation scales <paramref name="aScale"/> <c>[M]</c> and per-output-channel weight
    /// scales <paramref name="bScale"/> <c>[N]</c> (symmetric grids).
    /// </summary>
    public static void W8A8(ReadOnlySpan<sbyte> a, ReadOnlySpan<float> aScale, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> bScale, Span<float> c, int m, int n, int k)
    {
        if (aScale.Length != m) throw new ArgumentException($"activation scales: expected {m}, found {aScale.Length}.", nameof(aScale));
        if (bScale.Length != n) throw new ArgumentException($"weight scales: expected {n}, found {bScale.Length}.", nameof(bScale));
        var acc = new int[checked(m * n)];
        Int8(a, b, acc, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[i * n + j] = acc[i * n + j] * aScale[i] * bScale[j];
    }

    /// <summary>
    /// W4A8 GEMM: like <see cref="W8A8"/> but the weights are signed 4-bit codes packed two per byte
    /// (low nibble = even column), <paramref name="packedB"/> of <c>N × ceil(K/2)</c> bytes.
    /// </summary>
    public static void W4A8(ReadOnlySpan<sbyte> a, ReadOnlySpan<float> aScale, ReadOnlySpan<byte> packedB, ReadOnlySpan<float> bScale, Span<float> c, int m, int n, int k)
    {
        int rowBytes = (k + 1) / 2;
        if (packedB.Length != (long)n * rowBytes) throw new ArgumentException($"packed weights: expected {(long)n * rowBytes} bytes, found {packedB.Length}.", nameof(packedB));
        var b = new sbyte[checked(n * k)];
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
            {
                byte v = packedB[j * rowBytes + p / 2];
                int nibble = (p % 2 == 0) ? v & 0xF : v >> 4;
                b[j * k + p] = (sbyte)(nibble >= 8 ? nibble - 16 : nibble);
            }
        W8A8(a, aScale, b, bScale, c, m, n, k);
    }

    /// <summary>
    /// Dequantizing GEMM with grouped scales on both operands, in double precision:
    /// <c>C[m, n] = Σ_k sa[m, k / aGroup] · sb[n, k / bGroup] · A[m, k]·B[n, k]</c> — equal, in exact arithmetic,
    /// to the kernels' per-group fold <c>Σ_g sa[m, g]·sb[g, n]·acc_g</c>. A group size of 0 means one scale per row
    /// (<paramref name="aScale"/> <c>[M]</c>, <paramref name="bScale"/> <c>[N]</c>); otherwise the scales are
    /// <c>[M, ceil(K / aGroup)]</c> and <c>[N, ceil(K / bGroup)]</c>. Weights are int8 codes <c>[N, K]</c>
    /// (unpack 4-bit codes first).
    /// </summary>
    public static void Grouped(ReadOnlySpan<sbyte> a, ReadOnlySpan<float> aScale, int aGroup, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> bScale, int bGroup,
        Span<float> c, int m, int n, int k)
    {
        CheckShapes(a.Length, (long)m * k, b.Length, (long)n * k, c.Length, (long)m * n, m, n, k);
        if (aGroup < 0 || bGroup < 0) throw new ArgumentException($"group sizes must be 0 (one per row) or positive, got {aGroup} and {bGroup}.");
        int ag = aGroup > 0 ? aGroup : k, bg = bGroup > 0 ? bGroup : k;
        int aGroups = (k + ag - 1) / ag, bGroups = (k + bg - 1) / bg;
        if (aScale.Length != (long)m * aGroups) throw new ArgumentException($"activation scales: expected {(long)m * aGroups}, found {aScale.Length}.", nameof(aScale));
        if (bScale.Length != (long)n * bGroups) throw new ArgumentException($"weight scales: expected {(long)n * bGroups}, found {bScale.Length}.", nameof(bScale));
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                    sum += (double)a[i * k + p] * b[j * k + p] * aScale[i * aGroups + p / ag] * bScale[j * bGroups + p / bg];
                c[i * n + j] = (float)sum;
            }
    }

    private static void CheckShapes(long aLen, long aExpected, long bLen, long bExpected, long cLen, long cExpected, int m, int n, int k)
    {
        if (m <= 0 || n <= 0 || k <= 0) throw new ArgumentException($"GEMM dimensions must be positive, got M={m}, N={n}, K={k}.");
        if (aLen != aExpected) throw new ArgumentException($"A: expected M×K = {aExpected} elements, found {aLen}.");
        if (bLen != bExpected) throw new ArgumentException($"B: expected N×K = {bExpected} elements, found {bLen}.");
        if (cLen != cExpected) throw new ArgumentException($"C: expected M×N = {cExpected} elements, found {cLen}.");
    }
}
