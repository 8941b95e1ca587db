using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AdaTSQ.Kernels.Managed;

/// <summary>
/// The managed fallback, on the same packed layout as the native kernels: AVX-VNNI
/// (<see cref="AvxVnni.MultiplyWideningAndAdd(Vector256{int}, Vector256{byte}, Vector256{sbyte})"/>,
/// 256-bit <c>vpdpbusd</c>) when the CPU has it, else AVX2 (<c>vpmaddubsw</c>/<c>vpmaddwd</c>), else
/// plain C#. The AVX-VNNI path feeds a + 128 as the unsigned operand and subtracts 128 · Σ w (the
/// packed column sums) afterwards, as the native kernels do; the AVX2 path uses the sign trick
/// |a| · sign(w, a) = a · w (exact: weights are within ±127, so no pair of products saturates
/// <c>vpmaddubsw</c>). Four rows × 24 columns per inner loop;
/// tasks of 128 rows × a block of panels run on
/// <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>.
/// </summary>
/// <remarks>.NET exposes 256-bit AVX-VNNI but no 512-bit VNNI, hence the native kernels.</remarks>
internal static unsafe class ManagedGemm
{
    private const int MC = 128;
    private const int NR = PackedWeights.PanelWidth;
    private const int MR = 4;  // rows per inner loop

    /// <summary>When false the scalar loops run even on an AVX2 CPU (tests cover every path).</summary>
    internal static bool UseAvx2 { get; set; } = Avx2.IsSupported;

    /// <summary>When false the AVX2 loops run even on an AVX-VNNI CPU; needs <see cref="UseAvx2"/>.</summary>
    internal static bool UseAvxVnni { get; set; } = AvxVnni.IsSupported;

    /// <summary>Per-row quantization, or per row and per group of <paramref name="group"/> columns (scales <c>[m, k / group]</c>); group = k: per row.</summary>
    public static void QuantizeRows(ReadOnlySpan<float> x, int m, int k, int group, int bits, float clip, Span<sbyte> codes, Span<float> scales, int threads)
    {
        fixed (float* px = x)
        fixed (sbyte* pq = codes)
        fixed (float* ps = scales)
        {
            var job = new QuantJob((nint)px, (nint)pq, (nint)ps, k, group, (1 << (bits - 1)) - 1, clip);
            Parallel.For(0, m, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Row);
        }
    }

    // Each group of a row is quantized as a row of its own (the native quant_row on a segment).
    private sealed class QuantJob(nint x, nint q, nint s, int k, int group, int qmax, float clip)
    {
        public void Row(int r)
        {
            int groups = k / group;
            for (int g = 0; g < groups; g++)
                Segment((float*)x + (long)r * k + (long)g * group, (sbyte*)q + (long)r * k + (long)g * group, (float*)s + (long)r * groups + g);
        }

        private void Segment(float* row, sbyte* dst, float* scaleOut)
        {
            int k = group;
            if (UseAvx2 && Avx2.IsSupported && RowAvx2(row, dst, scaleOut)) return;
            float amax = 0;
            for (int i = 0; i < k; i++) amax = MathF.Max(amax, MathF.Abs(row[i]));
            float scale = amax * clip / qmax;
            if (!(scale >= 1e-12f)) scale = 1e-12f;
            *scaleOut = scale;
            for (int i = 0; i < k; i++)
            {
                float v = MathF.Round(row[i] / scale, MidpointRounding.ToEven);
                dst[i] = float.IsNaN(v) ? (sbyte)0 : (sbyte)Math.Clamp(v, -qmax, qmax);
            }
        }

        // The same row 8 lanes at a time: the same IEEE division and round-half-to-even, so the same
        // codes. A row with a NaN or an infinity returns false and takes the scalar loop (whose NaN
        // rules differ from vmaxps').
        private bool RowAvx2(float* row, sbyte* dst, float* scaleOut)
        {
            int k = group;
            var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
            var vmax = Vector256<float>.Zero;
            var nan = Vector256<float>.Zero;
            int i = 0;
            for (; i + 8 <= k; i += 8)
            {
                var v = Avx.LoadVector256(row + i);
                vmax = Avx.Max(vmax, Avx.And(v, absMask));
                nan = Avx.Or(nan, Avx.CompareUnordered(v, v));
            }
            if (!Avx.TestZ(nan.AsInt32(), nan.AsInt32())) return false;
            float amax = 0;
            for (int l = 0; l < 8; l++) amax = MathF.Max(amax, vmax.GetElement(l));
            for (int t = i; t < k; t++)
            {
                if (float.IsNaN(row[t])) return false;
                amax = MathF.Max(amax, MathF.Abs(row[t]));
            }
            if (!float.IsFinite(amax)) return false;  // ±∞: x / ∞ rounds to NaN codes, the scalar loop's rules
            float scale = amax * clip / qmax;
            if (!(scale >= 1e-12f)) scale = 1e-12f;
            *scaleOut = scale;
            var vs = Vector256.Create(scale);
            var lo = Vector256.Create((float)-qmax);
            var hi = Vector256.Create((float)qmax);
            for (i = 0; i + 8 <= k; i += 8)
            {
                var v = Avx.RoundToNearestInteger(Avx.Divide(Avx.LoadVector256(row + i), vs));
                var codes = Avx.ConvertToVector256Int32(Avx.Min(Avx.Max(v, lo), hi));  // exact: integral values
                for (int l = 0; l < 8; l++) dst[i + l] = (sbyte)codes.GetElement(l);
            }
            for (; i < k; i++)
                dst[i] = (sbyte)Math.Clamp(MathF.Round(row[i] / scale, MidpointRounding.ToEven), -qmax, qmax);
            return true;
        }
    }

    /// <summary>
    /// The dequantizing GEMM (or the int32 product); <paramref name="aGroup"/> 0: sa is <c>[m]</c>; else sa is
    /// <c>[m, K / aGroup]</c> and is folded per kernel group with sb (aGroup a multiple of the packed group, checked by the caller).
    /// </summary>
    public static void Gemm(sbyte* a, int m, PackedWeights w, float* sa, float* bias, void* c, bool outInt32, int threads, int aGroup = 0)
    {
        int panels = (int)(w.PaddedN / NR);
        int mblocks = (m + MC - 1) / MC;
        int ncPanels = 8;
        if (mblocks * ((panels + ncPanels - 1) / ncPanels) < 4 * threads)
            ncPanels = Math.Max(1, (panels + (4 * threads + mblocks - 1) / mblocks - 1) / ((4 * threads + mblocks - 1) / mblocks));
        int nblocks = (panels + ncPanels - 1) / ncPanels;
        bool vnni = UseAvx2 && UseAvxVnni && AvxVnni.IsSupported;  // one choice per call: the a + 128 copy and the correction must agree
        var job = new GemmJob((nint)a, m, w, (nint)sa, (nint)bias, (nint)c, outInt32, ncPanels, nblocks, panels, vnni, aGroup);
        Parallel.For(0, mblocks * nblocks, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Task);
    }

    private sealed class GemmJob(nint a, int m, PackedWeights w, nint sa, nint bias, nint c, bool outInt32, int ncPanels, int nblocks, int panels, bool vnni, int aGroup)
    {
        private readonly int _ldsa = aGroup > 0 ? w.K / aGroup : 1;

        public void Task(int task)
        {
            int ib = task / nblocks, jb = task % nblocks;
            int i0 = ib * MC, rows = Math.Min(MC, m - i0);
            int p0 = jb * ncPanels, p1 = Math.Min(panels, p0 + ncPanels);
            int rowBytes = (int)(w.Steps * 4);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(MR * rowBytes);
            int[] acc = ArrayPool<int>.Shared.Rent(MR * NR);
            float[] f = ArrayPool<float>.Shared.Rent(MR * NR);
            try
            {
                fixed (byte* block = buffer)
                fixed (int* pacc = acc)
                fixed (float* pf = f)
                    for (int r = i0; r < i0 + rows; r += MR)
                    {
                        // MR activation rows, each zero-padded to the packed K; rows past the block are zeros.
                        int n = Math.Min(MR, i0 + rows - r);
                        new Span<byte>(block, MR * rowBytes).Clear();
                        for (int i = 0; i < n; i++)
                            new ReadOnlySpan<byte>((byte*)a + (long)(r + i) * w.K, w.K).CopyTo(new Span<byte>(block + i * rowBytes, rowBytes));
                        if (vnni)  // the unsigned operand of vpdpbusd: a + 128 (K padding stays 0: its weights are 0)
                            for (int i = 0; i < n; i++) Offset(block + i * rowBytes, w.K);
                        for (int p = p0; p < p1; p++) RowsPanel(block, rowBytes, r, n, p, pacc, pf);
                    }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                ArrayPool<int>.Shared.Return(acc);
                ArrayPool<float>.Shared.Return(f);
            }
        }

        private static void Offset(byte* row, int k)
        {
            var flip = Vector256.Create((byte)0x80);
            int i = 0;
            for (; i + 32 <= k; i += 32) (Vector256.Load(row + i) ^ flip).Store(row + i);
            for (; i < k; i++) row[i] ^= 0x80;
        }

        // Rows r .. r + n (n <= MR) of one 48-column panel; acc and f hold MR rows of NR values.
        private void RowsPanel(byte* block, int rowBytes, int r, int n, int panel, int* acc, float* f)
        {
            long panelBytes = w.Steps * NR * (w.Bits == 4 ? 2 : 4);
            byte* bp = w.Codes + panel * panelBytes;
            int col0 = panel * NR, cols = Math.Min(NR, w.N - col0);
            long groupSteps = w.Group / 4;
            for (int g = 0; g < w.Groups; g++)
            {
                byte* a = block + g * groupSteps * 4;
                byte* b = bp + g * groupSteps * NR * (w.Bits == 4 ? 2 : 4);
                if (vnni) DotRows(a, rowBytes, b, groupSteps, w.Bits == 4, acc, vnni: true);
                else if (UseAvx2) DotRows(a, rowBytes, b, groupSteps, w.Bits == 4, acc, vnni: false);
                else
                    for (int i = 0; i < n; i++) DotScalar(a + i * rowBytes, b, groupSteps, w.Bits == 4, acc + i * NR);
                float* scale = w.Scale + (long)g * w.PaddedN + col0;  // padded to NR columns
                int* colSum = w.ColSum + (long)g * w.PaddedN + col0;
                if (vnni)  // Σ (a + 128) · w − 128 · Σ w
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < NR; j += 8)
                            (Vector256.Load(acc + i * NR + j) - (Vector256.Load(colSum + j) << 7)).Store(acc + i * NR + j);
                if (aGroup > 0)  // per-group activation scales: f += float(acc) · sb · sa[row, g]
                {
                    long saCol = (long)g * w.Group / aGroup;
                    for (int i = 0; i < n; i++)
                    {
                        var s = Vector256.Create(((float*)sa)[(long)(r + i) * _ldsa + saCol]);
                        for (int j = 0; j < NR; j += 8)
                        {
                            var v = Vector256.ConvertToSingle(Vector256.Load(acc + i * NR + j)) * Vector256.Load(scale + j) * s;
                            (g == 0 ? v : Vector256.Load(f + i * NR + j) + v).Store(f + i * NR + j);
                        }
                    }
                }
                else
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < NR; j += 8)
                        {
                            var v = Vector256.ConvertToSingle(Vector256.Load(acc + i * NR + j)) * Vector256.Load(scale + j);
                            (g == 0 ? v : Vector256.Load(f + i * NR + j) + v).Store(f + i * NR + j);
                        }
            }
            for (int i = 0; i < n; i++)
            {
                if (outInt32)
                {
                    int* dst = (int*)c + (long)(r + i) * w.N + col0;
                    for (int j = 0; j < cols; j++) dst[j] = w.Bits == 4 ? acc[i * NR + j] >> 4 : acc[i * NR + j];
                }
                else
                {
                    float* dst = (float*)c + (long)(r + i) * w.N + col0;
                    if (aGroup > 0)
                    {
                        for (int j = 0; j < cols; j++) dst[j] = f[i * NR + j] + (bias == 0 ? 0f : ((float*)bias)[col0 + j]);
                        continue;
                    }
                    float s = ((float*)sa)[r + i];
                    for (int j = 0; j < cols; j++) dst[j] = MathF.FusedMultiplyAdd(f[i * NR + j], s, bias == 0 ? 0f : ((float*)bias)[col0 + j]);
                }
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

    // acc[i * 48 + j] = Σ over `steps` k4 steps of a_i · b_j for the MR rows a_i (row stride rowBytes),
    // half a panel (24 columns) at a time: 12 accumulators, each B load serves MR rows. vnni: one
    // vpdpbusd per 32 products instead of vpmaddubsw + vpmaddwd + vpaddd (the JIT drops the branch's
    // dead side: vnni is the same for a whole call).
    private static void DotRows(byte* a, int rowBytes, byte* b, long steps, bool w4, int* acc, bool vnni)
    {
        var ones = Vector256.Create((short)1);
        var high = Vector256.Create((byte)0xF0);
        for (int half = 0; half < 2; half++)
        {
            Vector256<int> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
            Vector256<int> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
            byte* bh = b + half * 96;
            for (long s = 0; s < steps; s++)
            {
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
                if (vnni)  // rows hold a + 128 (unsigned); the caller subtracts 128 · Σ w
                {
                    var u0 = Vector256.Create(*(int*)(a + s * 4)).AsByte();
                    var u1 = Vector256.Create(*(int*)(a + rowBytes + s * 4)).AsByte();
                    var u2 = Vector256.Create(*(int*)(a + 2 * rowBytes + s * 4)).AsByte();
                    var u3 = Vector256.Create(*(int*)(a + 3 * rowBytes + s * 4)).AsByte();
                    c00 = AvxVnni.MultiplyWideningAndAdd(c00, u0, b0);
                    c01 = AvxVnni.MultiplyWideningAndAdd(c01, u0, b1);
                    c02 = AvxVnni.MultiplyWideningAndAdd(c02, u0, b2);
                    c10 = AvxVnni.MultiplyWideningAndAdd(c10, u1, b0);
                    c11 = AvxVnni.MultiplyWideningAndAdd(c11, u1, b1);
                    c12 = AvxVnni.MultiplyWideningAndAdd(c12, u1, b2);
                    c20 = AvxVnni.MultiplyWideningAndAdd(c20, u2, b0);
                    c21 = AvxVnni.MultiplyWideningAndAdd(c21, u2, b1);
                    c22 = AvxVnni.MultiplyWideningAndAdd(c22, u2, b2);
                    c30 = AvxVnni.MultiplyWideningAndAdd(c30, u3, b0);
                    c31 = AvxVnni.MultiplyWideningAndAdd(c31, u3, b1);
                    c32 = AvxVnni.MultiplyWideningAndAdd(c32, u3, b2);
                }
                else
                {
                    // |a| · sign(b, a) = a · b, exact; |−128| = 128 as an unsigned byte.
                    var a0 = Vector256.Create(*(int*)(a + s * 4)).AsSByte();
                    var u0 = Avx2.Abs(a0);
                    var a1 = Vector256.Create(*(int*)(a + rowBytes + s * 4)).AsSByte();
                    var u1 = Avx2.Abs(a1);
                    var a2 = Vector256.Create(*(int*)(a + 2 * rowBytes + s * 4)).AsSByte();
                    var u2 = Avx2.Abs(a2);
                    var a3 = Vector256.Create(*(int*)(a + 3 * rowBytes + s * 4)).AsSByte();
                    var u3 = Avx2.Abs(a3);
                    c00 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u0, Avx2.Sign(b0, a0)), ones);
                    c01 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u0, Avx2.Sign(b1, a0)), ones);
                    c02 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u0, Avx2.Sign(b2, a0)), ones);
                    c10 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u1, Avx2.Sign(b0, a1)), ones);
                    c11 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u1, Avx2.Sign(b1, a1)), ones);
                    c12 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u1, Avx2.Sign(b2, a1)), ones);
                    c20 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u2, Avx2.Sign(b0, a2)), ones);
                    c21 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u2, Avx2.Sign(b1, a2)), ones);
                    c22 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u2, Avx2.Sign(b2, a2)), ones);
                    c30 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u3, Avx2.Sign(b0, a3)), ones);
                    c31 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u3, Avx2.Sign(b1, a3)), ones);
                    c32 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u3, Avx2.Sign(b2, a3)), ones);
                }
            }
            int* h = acc + half * 24;
            c00.Store(h); c01.Store(h + 8); c02.Store(h + 16);
            c10.Store(h + NR); c11.Store(h + NR + 8); c12.Store(h + NR + 16);
            c20.Store(h + 2 * NR); c21.Store(h + 2 * NR + 8); c22.Store(h + 2 * NR + 16);
            c30.Store(h + 3 * NR); c31.Store(h + 3 * NR + 8); c32.Store(h + 3 * NR + 16);
        }
    }
}
