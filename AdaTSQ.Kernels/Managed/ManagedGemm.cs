using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AdaTSQ.Kernels.Managed;

/// <summary>
/// The managed fallback, on the same packed layout as the native kernels: AVX2
/// (<c>vpmaddubsw</c>/<c>vpmaddwd</c> with the sign trick, exact) when the CPU has it, else plain C#.
/// One row × 24 columns per inner loop; tasks of 128 rows × a block of panels run on
/// <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>.
/// </summary>
/// <remarks>.NET exposes 256-bit AVX-VNNI but no 512-bit VNNI; this path does not use AVX-VNNI
/// (no machine here has it to test on), so it is an AVX2 path at best.</remarks>
internal static unsafe class ManagedGemm
{
    private const int MC = 128;
    private const int NR = PackedWeights.PanelWidth;

    /// <summary>When false the scalar loops run even on an AVX2 CPU (tests cover both).</summary>
    internal static bool UseAvx2 { get; set; } = Avx2.IsSupported;

    public static void QuantizeRows(ReadOnlySpan<float> x, int m, int k, int bits, float clip, Span<sbyte> codes, Span<float> scales, int threads)
    {
        fixed (float* px = x)
        fixed (sbyte* pq = codes)
        fixed (float* ps = scales)
        {
            var job = new QuantJob((nint)px, (nint)pq, (nint)ps, k, (1 << (bits - 1)) - 1, clip);
            Parallel.For(0, m, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Row);
        }
    }

    private sealed class QuantJob(nint x, nint q, nint s, int k, int qmax, float clip)
    {
        public void Row(int r)
        {
            var row = new ReadOnlySpan<float>((float*)x + (long)r * k, k);
            float amax = 0;
            foreach (float v in row) amax = MathF.Max(amax, MathF.Abs(v));
            float scale = amax * clip / qmax;
            if (!(scale >= 1e-12f)) scale = 1e-12f;
            ((float*)s)[r] = scale;
            sbyte* dst = (sbyte*)q + (long)r * k;
            for (int i = 0; i < k; i++)
            {
                float v = MathF.Round(row[i] / scale, MidpointRounding.ToEven);
                dst[i] = float.IsNaN(v) ? (sbyte)0 : (sbyte)Math.Clamp(v, -qmax, qmax);
            }
        }
    }

    public static void Gemm(sbyte* a, int m, PackedWeights w, float* sa, float* bias, void* c, bool outInt32, int threads)
    {
        int panels = (int)(w.PaddedN / NR);
        int mblocks = (m + MC - 1) / MC;
        int ncPanels = 8;
        if (mblocks * ((panels + ncPanels - 1) / ncPanels) < 4 * threads)
            ncPanels = Math.Max(1, (panels + (4 * threads + mblocks - 1) / mblocks - 1) / ((4 * threads + mblocks - 1) / mblocks));
        int nblocks = (panels + ncPanels - 1) / ncPanels;
        var job = new GemmJob((nint)a, m, w, (nint)sa, (nint)bias, (nint)c, outInt32, ncPanels, nblocks, panels);
        Parallel.For(0, mblocks * nblocks, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Task);
    }

    private sealed class GemmJob(nint a, int m, PackedWeights w, nint sa, nint bias, nint c, bool outInt32, int ncPanels, int nblocks, int panels)
    {
        public void Task(int task)
        {
            int ib = task / nblocks, jb = task % nblocks;
            int i0 = ib * MC, rows = Math.Min(MC, m - i0);
            int p0 = jb * ncPanels, p1 = Math.Min(panels, p0 + ncPanels);
            int rowBytes = (int)(w.Steps * 4);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(rowBytes);
            int[] acc = ArrayPool<int>.Shared.Rent(NR);
            float[] f = ArrayPool<float>.Shared.Rent(NR);
            try
            {
                fixed (byte* row = buffer)
                fixed (int* pacc = acc)
                fixed (float* pf = f)
                    for (int r = i0; r < i0 + rows; r++)
                    {
                        // One activation row, zero-padded to the packed K.
                        new Span<byte>(row, rowBytes).Clear();
                        new ReadOnlySpan<byte>((byte*)a + (long)r * w.K, w.K).CopyTo(new Span<byte>(row, rowBytes));
                        for (int p = p0; p < p1; p++) RowPanel(row, r, p, pacc, pf);
                    }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                ArrayPool<int>.Shared.Return(acc);
                ArrayPool<float>.Shared.Return(f);
            }
        }

        private void RowPanel(byte* row, int r, int panel, int* acc, float* f)
        {
            long panelBytes = w.Steps * NR * (w.Bits == 4 ? 2 : 4);
            byte* bp = w.Codes + panel * panelBytes;
            int col0 = panel * NR, cols = Math.Min(NR, w.N - col0);
            long groupSteps = w.Group / 4;
            for (int g = 0; g < w.Groups; g++)
            {
                byte* a = row + g * groupSteps * 4;
                byte* b = bp + g * groupSteps * NR * (w.Bits == 4 ? 2 : 4);
                if (UseAvx2) DotAvx2(a, b, groupSteps, w.Bits == 4, acc);
                else DotScalar(a, b, groupSteps, w.Bits == 4, acc);
                for (int j = 0; j < cols; j++)
                {
                    float v = acc[j] * w.Scale[(long)g * w.PaddedN + col0 + j];
                    f[j] = g == 0 ? v : f[j] + v;
                }
            }
            if (outInt32)
            {
                int* dst = (int*)c + (long)r * w.N + col0;
                for (int j = 0; j < cols; j++) dst[j] = w.Bits == 4 ? acc[j] >> 4 : acc[j];
            }
            else
            {
                float* dst = (float*)c + (long)r * w.N + col0;
                float s = ((float*)sa)[r];
                for (int j = 0; j < cols; j++) dst[j] = MathF.FusedMultiplyAdd(f[j], s, bias == 0 ? 0f : ((float*)bias)[col0 + j]);
            }
        }
    }

    // acc[0..48) = Σ over `steps` k4 steps of a·b (kernel units: 16·w for 4-bit weights).
    private static void DotScalar(byte* a, byte* b, long steps, bool w4, int* acc)
    {
        for (int j = 0; j < NR; j++) acc[j] = 0;
        for (long s = 0; s < steps; s++)
            for (int j = 0; j < NR; j++)
                for (int kk = 0; kk < 4; kk++)
                {
                    int av = (sbyte)a[s * 4 + kk];
                    int bv = w4
                        ? (sbyte)((s & 1) == 0 ? (byte)(b[((s >> 1) * NR + j) * 4 + kk] << 4) : (byte)(b[((s >> 1) * NR + j) * 4 + kk] & 0xF0))
                        : (sbyte)b[(s * NR + j) * 4 + kk];
                    acc[j] += av * bv;
                }
    }

    private static void DotAvx2(byte* a, byte* b, long steps, bool w4, int* acc)
    {
        var ones = Vector256.Create((short)1);
        var high = Vector256.Create((byte)0xF0);
        for (int half = 0; half < 2; half++)
        {
            Vector256<int> c0 = default, c1 = default, c2 = default;
            byte* bh = b + half * 96;
            for (long s = 0; s < steps; s++)
            {
                var va = Vector256.Create(*(int*)(a + s * 4)).AsSByte();
                var abs = Avx2.Abs(va);
                Vector256<sbyte> b0, b1, b2;
                if (!w4)
                {
                    byte* p = bh + s * NR * 4;
                    b0 = Avx.LoadVector256((sbyte*)p); b1 = Avx.LoadVector256((sbyte*)(p + 32)); b2 = Avx.LoadVector256((sbyte*)(p + 64));
                }
                else
                {
                    byte* p = bh + (s >> 1) * NR * 4;
                    var v0 = Avx.LoadVector256(p); var v1 = Avx.LoadVector256(p + 32); var v2 = Avx.LoadVector256(p + 64);
                    if ((s & 1) == 0)
                    {
                        v0 = Avx2.ShiftLeftLogical(v0.AsInt16(), 4).AsByte();
                        v1 = Avx2.ShiftLeftLogical(v1.AsInt16(), 4).AsByte();
                        v2 = Avx2.ShiftLeftLogical(v2.AsInt16(), 4).AsByte();
                    }
                    b0 = (v0 & high).AsSByte(); b1 = (v1 & high).AsSByte(); b2 = (v2 & high).AsSByte();
                }
                c0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(abs, Avx2.Sign(b0, va)), ones);
                c1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(abs, Avx2.Sign(b1, va)), ones);
                c2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(abs, Avx2.Sign(b2, va)), ones);
            }
            c0.Store(acc + half * 24); c1.Store(acc + half * 24 + 8); c2.Store(acc + half * 24 + 16);
        }
    }
}
