using AdaTSQ.Kernels.Interop;
using AdaTSQ.Kernels.Managed;

namespace AdaTSQ.Kernels;

/// <summary>
/// Integer GEMMs on spans: dynamic per-token (or per-token × per-group) activation quantization, the exact int32 product,
/// and the dequantizing GEMMs W8A8 / W4A8 / W4A4 (the weight bits come from the
/// <see cref="PackedWeights"/>, the activation bits from the codes you pass or
/// the <c>Linear</c> overloads' argument). Convention: <c>C[m, n] = Σ_k A[m, k]·B[n, k]</c>.
/// Every argument is checked before any native call; calls allocate no managed memory on the
/// native paths. A call on disposed <see cref="PackedWeights"/> throws
/// <see cref="ObjectDisposedException"/>; disposing weights while calls use them is safe (they
/// finish first, see <see cref="PackedWeights"/>).
/// </summary>
public static unsafe class IntegerGemm
{
    /// <summary>
    /// Dynamic per-row symmetric quantization of <paramref name="x"/> <c>[m, k]</c>:
    /// <c>scale = max(clip·max|x| / qmax, 1e-12)</c>, <c>q = clamp(round_half_even(x / scale), ±qmax)</c>,
    /// qmax = 2^(bits−1) − 1 — the same grid as <c>FakeQuantizer</c> with a per-token spec.
    /// </summary>
    public static void QuantizeActivations(ReadOnlySpan<float> x, int m, int k, int bits, Span<sbyte> codes, Span<float> scales, double clipRatio = 1.0, KernelOptions? options = null) =>
        QuantizeActivations(x, m, k, bits, 0, codes, scales, clipRatio, options);

    /// <summary>
    /// Dynamic per-token × per-group symmetric quantization of <paramref name="x"/> <c>[m, k]</c>: each row is cut
    /// into <c>k / groupSize</c> groups of <paramref name="groupSize"/> columns, each quantized as
    /// a row is by the per-token overload (<c>scale[m, g] = max(clip·max_{k∈g}|x| / qmax, 1e-12)</c>, round half to
    /// even) — the same grid as <c>FakeQuantizer</c> with a per-group activation spec. <paramref name="groupSize"/> 0:
    /// one scale per row (the per-token overload).
    /// </summary>
    /// <param name="x">Activations <c>[m, k]</c>.</param>
    /// <param name="m">Rows (tokens).</param>
    /// <param name="k">Columns; a multiple of <paramref name="groupSize"/>.</param>
    /// <param name="bits">Activation bits, 2–8.</param>
    /// <param name="groupSize">Columns per scale; 0 for one scale per row.</param>
    /// <param name="codes">Output codes <c>[m, k]</c>.</param>
    /// <param name="scales">Output scales <c>[m, k / groupSize]</c> (<c>[m]</c> when <paramref name="groupSize"/> is 0).</param>
    /// <param name="clipRatio">Fraction of each group's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    public static void QuantizeActivations(ReadOnlySpan<float> x, int m, int k, int bits, int groupSize, Span<sbyte> codes, Span<float> scales, double clipRatio = 1.0, KernelOptions? options = null)
    {
        if (m <= 0 || k <= 0) throw new ArgumentOutOfRangeException(m <= 0 ? nameof(m) : nameof(k), $"activation shape [{m}, {k}] must be positive.");
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "activation bits must be 2–8.");
        if (!(clipRatio > 0 && clipRatio <= 1)) throw new ArgumentOutOfRangeException(nameof(clipRatio), clipRatio, "clip ratio must be in (0, 1].");
        if (groupSize < 0 || groupSize > 0 && k % groupSize != 0)
            throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, $"activation group size must be 0 (per token) or a positive divisor of K = {k}.");
        int group = groupSize > 0 ? groupSize : k, groups = k / group;
        Expect(x.Length, (long)m * k, nameof(x), "m × k");
        Expect(codes.Length, (long)m * k, nameof(codes), "m × k");
        Expect(scales.Length, (long)m * groups, nameof(scales), groupSize > 0 ? "m × k / groupSize" : "m");
        options ??= KernelOptions.Default;
        var isa = NativeKernels.Resolve(options.Isa);
        if (isa == KernelIsa.Managed)
        {
            ManagedGemm.QuantizeRows(x, m, k, group, bits, (float)clipRatio, codes, scales, options.EffectiveThreads);
            return;
        }
        fixed (float* px = x)
        fixed (sbyte* pq = codes)
        fixed (float* ps = scales)
            NativeMethods.Check(groupSize == 0
                ? NativeMethods.QuantizeRows((int)isa, px, m, k, k, bits, (float)clipRatio, pq, k, ps, options.EffectiveThreads)
                : NativeMethods.QuantizeGroups((int)isa, px, m, k, k, bits, (float)clipRatio, group, pq, k, ps, groups, options.EffectiveThreads), "QuantizeActivations");
    }

    /// <summary>The exact int32 product <c>C = A·Bᵀ</c> (per-channel weights only; scales are not applied).</summary>
    /// <exception cref="NotSupportedException">The weights have several scale groups along K.</exception>
    public static void Int32(ReadOnlySpan<sbyte> a, int m, PackedWeights weights, Span<int> c, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Groups != 1) throw new NotSupportedException($"Int32 needs per-channel weights (one group along K); these have {weights.Groups} groups of {weights.GroupSize}.");
        CheckGemm(a.Length, m, weights, c.Length, null, 0);
        fixed (sbyte* pa = a)
        fixed (int* pc = c)
            Run(pa, m, weights, null, null, pc, outInt32: true, options ?? KernelOptions.Default, "Int32");
    }

    /// <summary>
    /// Dequantizing GEMM: <c>C[m, n] = sa[m] · Σ_g sb[n, g] · Σ_{k∈g} A[m, k]·B[n, k] + bias[n]</c>.
    /// W8A8 or W4A8 (W4A4 with 4-bit activation codes) depending on <paramref name="weights"/>.
    /// </summary>
    /// <param name="a">Activation codes <c>[m, K]</c>.</param>
    /// <param name="activationScales">Per-token scales <c>[m]</c>.</param>
    /// <param name="m">Rows (tokens).</param>
    /// <param name="weights">Packed weights <c>[N, K]</c>.</param>
    /// <param name="bias">Bias <c>[N]</c>, or empty for none.</param>
    /// <param name="c">Output <c>[m, N]</c>.</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    public static void Gemm(ReadOnlySpan<sbyte> a, ReadOnlySpan<float> activationScales, int m, PackedWeights weights, ReadOnlySpan<float> bias, Span<float> c, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckGemm(a.Length, m, weights, c.Length, activationScales.Length, bias.Length);
        fixed (sbyte* pa = a)
        fixed (float* psa = activationScales)
        fixed (float* pb = bias)
        fixed (float* pc = c)
            Run(pa, m, weights, psa, bias.IsEmpty ? null : pb, pc, outInt32: false, options ?? KernelOptions.Default, "Gemm");
    }

    /// <summary>
    /// Dequantizing GEMM with per-token × per-group activation scales:
    /// <c>C[m, n] = Σ_g sa[m, g·group / activationGroupSize] · sb[g, n] · Σ_{k∈g} A[m, k]·B[n, k] + bias[n]</c>, g over
    /// the weights' kernel groups (<see cref="PackedWeights.Group"/>). <paramref name="activationGroupSize"/> must divide K
    /// and be a multiple of the packed group (<see cref="ActivationGrouping"/>); 0 is the per-token overload.
    /// </summary>
    /// <param name="a">Activation codes <c>[m, K]</c>.</param>
    /// <param name="activationScales">Scales <c>[m, K / activationGroupSize]</c> (<c>[m]</c> when it is 0).</param>
    /// <param name="activationGroupSize">Columns of K per activation scale, or 0 for one per row.</param>
    /// <param name="m">Rows (tokens).</param>
    /// <param name="weights">Packed weights <c>[N, K]</c>.</param>
    /// <param name="bias">Bias <c>[N]</c>, or empty for none.</param>
    /// <param name="c">Output <c>[m, N]</c>.</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    /// <exception cref="NotSupportedException">The activation group does not fit the packed weights' group.</exception>
    public static void Gemm(ReadOnlySpan<sbyte> a, ReadOnlySpan<float> activationScales, int activationGroupSize, int m, PackedWeights weights, ReadOnlySpan<float> bias, Span<float> c,
        KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckActivationGroup(weights, activationGroupSize);
        int groups = activationGroupSize > 0 ? weights.K / activationGroupSize : 1;
        CheckGemm(a.Length, m, weights, c.Length, null, bias.Length);
        Expect(activationScales.Length, (long)m * groups, nameof(activationScales), activationGroupSize > 0 ? $"m × K / activationGroupSize = {m} × {groups}" : "m");
        fixed (sbyte* pa = a)
        fixed (float* psa = activationScales)
        fixed (float* pb = bias)
        fixed (float* pc = c)
            Run(pa, m, weights, psa, bias.IsEmpty ? null : pb, pc, outInt32: false, options ?? KernelOptions.Default, "Gemm", activationGroupSize);
    }

    /// <summary>
    /// A quantized linear layer on floats: quantizes <paramref name="x"/> <c>[m, K]</c> per token to
    /// <paramref name="activationBits"/> into the caller's scratch spans, then runs
    /// <see cref="Gemm(ReadOnlySpan{sbyte}, ReadOnlySpan{float}, int, PackedWeights, ReadOnlySpan{float}, Span{float}, KernelOptions?)"/>.
    /// </summary>
    public static void Linear(ReadOnlySpan<float> x, int m, PackedWeights weights, int activationBits, ReadOnlySpan<float> bias, Span<float> y,
        Span<sbyte> codeScratch, Span<float> scaleScratch, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckGemm((long)m * weights.K, m, weights, y.Length, m, bias.Length);
        QuantizeActivations(x, m, weights.K, activationBits, codeScratch, scaleScratch, 1.0, options);
        Gemm(codeScratch, scaleScratch, m, weights, bias, y, options);
    }

    /// <summary>
    /// A quantized linear layer on floats with the activation quantization fused into the GEMM:
    /// each row of <paramref name="x"/> <c>[m, K]</c> is quantized per token to
    /// <paramref name="activationBits"/> straight into the kernel's packed layout (no code buffer),
    /// then multiplied; <c>y = sa·sb·(q(x)·Wᵀ) + bias</c>, bit-identical to quantizing with
    /// <see cref="QuantizeActivations(ReadOnlySpan{float}, int, int, int, Span{sbyte}, Span{float}, double, KernelOptions?)"/> and calling
    /// <see cref="Gemm(ReadOnlySpan{sbyte}, ReadOnlySpan{float}, int, PackedWeights, ReadOnlySpan{float}, Span{float}, KernelOptions?)"/>. The managed path quantizes
    /// into pooled scratch arrays first.
    /// </summary>
    /// <param name="x">Activations <c>[m, K]</c>.</param>
    /// <param name="m">Rows (tokens).</param>
    /// <param name="weights">Packed weights <c>[N, K]</c>.</param>
    /// <param name="activationBits">Activation bits, 2–8 (8: W8A8 / W4A8; 4: W4A4).</param>
    /// <param name="bias">Bias <c>[N]</c>, or empty for none.</param>
    /// <param name="y">Output <c>[m, N]</c>.</param>
    /// <param name="clipRatio">Fraction of each row's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    public static void Linear(ReadOnlySpan<float> x, int m, PackedWeights weights, int activationBits, ReadOnlySpan<float> bias, Span<float> y,
        double clipRatio = 1.0, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckGemm(x.Length, m, weights, y.Length, null, bias.Length);
        fixed (float* px = x)
        fixed (float* pb = bias)
        fixed (float* py = y)
            LinearFused(px, m, weights, activationBits, bias.IsEmpty ? null : pb, py, clipRatio, options ?? KernelOptions.Default, "Linear", null);
    }

    /// <summary>
    /// The fused quantized linear layer with per-token × per-group activation quantization: each row of
    /// <paramref name="x"/> is quantized per group of <paramref name="activationGroupSize"/> columns (as
    /// <see cref="QuantizeActivations(ReadOnlySpan{float}, int, int, int, int, Span{sbyte}, Span{float}, double, KernelOptions?)"/>)
    /// straight into the kernel's layout, and both scales are folded per group (see the per-group <c>Gemm</c>).
    /// <paramref name="activationGroupSize"/> 0 is the per-token overload.
    /// </summary>
    /// <param name="x">Activations <c>[m, K]</c>.</param>
    /// <param name="m">Rows (tokens).</param>
    /// <param name="weights">Packed weights <c>[N, K]</c>, packed at a group that divides <paramref name="activationGroupSize"/>.</param>
    /// <param name="activationBits">Activation bits, 2–8.</param>
    /// <param name="activationGroupSize">Columns of K per activation scale, or 0 for one per row.</param>
    /// <param name="bias">Bias <c>[N]</c>, or empty for none.</param>
    /// <param name="y">Output <c>[m, N]</c>.</param>
    /// <param name="clipRatio">Fraction of each group's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    /// <exception cref="NotSupportedException">The activation group does not fit the packed weights' group.</exception>
    public static void Linear(ReadOnlySpan<float> x, int m, PackedWeights weights, int activationBits, int activationGroupSize, ReadOnlySpan<float> bias, Span<float> y,
        double clipRatio = 1.0, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckGemm(x.Length, m, weights, y.Length, null, bias.Length);
        fixed (float* px = x)
        fixed (float* pb = bias)
        fixed (float* py = y)
            LinearFused(px, m, weights, activationBits, bias.IsEmpty ? null : pb, py, clipRatio, options ?? KernelOptions.Default, "Linear", null, activationGroupSize);
    }

    internal static void LinearFused(float* x, int m, PackedWeights w, int activationBits, float* bias, float* y, double clipRatio, KernelOptions options, string operation,
        LinearOps* ops, int activationGroupSize = 0)
    {
        if (activationBits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(activationBits), activationBits, "activation bits must be 2–8.");
        if (!(clipRatio > 0 && clipRatio <= 1)) throw new ArgumentOutOfRangeException(nameof(clipRatio), clipRatio, "clip ratio must be in (0, 1].");
        CheckActivationGroup(w, activationGroupSize);
        var isa = NativeKernels.Resolve(options.Isa);
        if (isa == KernelIsa.Managed)
        {
            long count = (long)m * w.K;
            int group = activationGroupSize > 0 ? activationGroupSize : w.K;
            int scaleCount = checked(m * (w.K / group));
            var codes = System.Buffers.ArrayPool<sbyte>.Shared.Rent(checked((int)count));
            var scales = System.Buffers.ArrayPool<float>.Shared.Rent(scaleCount);
            bool prologue = ops is not null && (ops->LayerNorm != 0 || ops->InputScale is not null || ops->RotBlock > 0);
            long rank = ops is null ? 0 : ops->Rank;
            float[]? normed = prologue ? System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)count)) : null;
            float[]? down = rank > 0 ? System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)(m * rank))) : null;
            try
            {
                fixed (float* pn = normed)
                fixed (float* pt = down)
                {
                    var input = x;
                    if (normed is not null)
                    {
                        ManagedFusedOps.Prologue(x, m, w.K, ops, pn);
                        input = pn;
                    }
                    if (rank > 0) ManagedFusedOps.LowRankDown(input, m, w.K, ops, pt);
                    ManagedGemm.QuantizeRows(new ReadOnlySpan<float>(input, checked((int)count)), m, w.K, group, activationBits, (float)clipRatio,
                        codes.AsSpan(0, (int)count), scales.AsSpan(0, scaleCount), options.EffectiveThreads);
                    fixed (sbyte* pa = codes)
                    fixed (float* ps = scales)
                        Run(pa, m, w, ps, bias, y, outInt32: false, options, operation, activationGroupSize);
                    if (rank > 0) ManagedFusedOps.LowRankUp(y, m, w.N, ops, pt);  // y = GEMM + bias + branch, then the epilogue
                }
                if (ops is not null) ManagedFusedOps.Epilogue(y, m, w.N, ops);
            }
            finally
            {
                System.Buffers.ArrayPool<sbyte>.Shared.Return(codes);
                System.Buffers.ArrayPool<float>.Shared.Return(scales);
                if (normed is not null) System.Buffers.ArrayPool<float>.Shared.Return(normed);
                if (down is not null) System.Buffers.ArrayPool<float>.Shared.Return(down);
            }
            return;
        }
        using var lease = w.Acquire();  // the packed memory stays allocated until the call returns, even if w is disposed meanwhile
        GemmArgs args = Args(null, m, w, null, bias, y, outInt32: false, options.EffectiveThreads, isa, activationGroupSize);
        NativeMethods.Check(ops is null ? NativeMethods.Linear(&args, x, w.K, activationBits, (float)clipRatio)
            : NativeMethods.LinearEx(&args, x, w.K, activationBits, (float)clipRatio, ops), operation);
    }

    internal static void LayerNormModulate(float* x, long m, long k, LinearOps* ops, float* y, KernelOptions options)
    {
        var isa = NativeKernels.Resolve(options.Isa);
        if (isa == KernelIsa.Managed) { ManagedFusedOps.Prologue(x, m, k, ops, y); return; }
        NativeMethods.Check(NativeMethods.LayerNormModulate((int)isa, x, m, k, k, ops, y, k, options.EffectiveThreads), "LayerNormModulate");
    }

    internal static void ApplyEpilogue(float* y, long m, long n, LinearOps* ops, KernelOptions options)
    {
        var isa = NativeKernels.Resolve(options.Isa);
        if (isa == KernelIsa.Managed) { ManagedFusedOps.Epilogue(y, m, n, ops); return; }
        NativeMethods.Check(NativeMethods.ApplyEpilogue((int)isa, y, m, n, n, ops, options.EffectiveThreads), "ApplyEpilogue");
    }

    // Reads w's pointers: call with a lease held (Acquire).
    private static GemmArgs Args(sbyte* a, int m, PackedWeights w, float* sa, float* bias, void* c, bool outInt32, int threads, KernelIsa isa, int activationGroupSize = 0) => new()
    {
        A = a, Lda = w.K, B = w.Codes, ColSum = w.ColSum, WeightScale = w.Scale, ActivationScale = sa, Bias = bias,
        C = c, Ldc = w.N, M = m, N = w.N, K = w.K, PaddedN = w.PaddedN, Group = w.Group, Groups = w.Groups,
        WeightBits = w.Bits, OutInt32 = outInt32 ? 1 : 0, Threads = threads, Isa = (int)isa,
        ActivationGroup = activationGroupSize, LdActivationScale = activationGroupSize > 0 ? w.K / activationGroupSize : 0,
    };

    // A per-group activation call on weights packed at a group that does not divide the activation group (or a group that does not divide K).
    private static void CheckActivationGroup(PackedWeights w, int activationGroupSize)
    {
        if (ActivationGrouping.Problem(w, activationGroupSize) is { } why)
        {
            if (activationGroupSize < 0 || w.K % Math.Max(1, activationGroupSize) != 0)
                throw new ArgumentOutOfRangeException(nameof(activationGroupSize), activationGroupSize, why);
            throw new NotSupportedException(why);
        }
    }

    /// <summary>
    /// The register-only throughput of <c>vpdpbusd</c> on <paramref name="isa"/> (512-bit or
    /// 256-bit VNNI): 24 (12) independent accumulators, no memory operands,
    /// <paramref name="iterations"/> loop trips per thread. Returns int8 GOPS (2 ops per multiply-add).
    /// </summary>
    public static double MeasureVnniPeakGops(KernelIsa isa, long iterations, int threads)
    {
        if (isa is not (KernelIsa.Avx512Vnni or KernelIsa.AvxVnni)) throw new ArgumentException($"the peak loop exists for Avx512Vnni and AvxVnni, not {isa}.", nameof(isa));
        NativeKernels.Resolve(isa);
        double seconds, ops;
        NativeMethods.Check(NativeMethods.VnniPeak((int)isa, iterations, threads, &seconds, &ops), "MeasureVnniPeakGops");
        return ops / seconds / 1e9;
    }

    internal static void Run(sbyte* a, int m, PackedWeights w, float* sa, float* bias, void* c, bool outInt32, KernelOptions options, string operation, int activationGroupSize = 0)
    {
        var isa = NativeKernels.Resolve(options.Isa);
        int threads = options.EffectiveThreads;
        using var lease = w.Acquire();  // the packed memory stays allocated until the call returns, even if w is disposed meanwhile
        if (isa == KernelIsa.Managed)
        {
            ManagedGemm.Gemm(a, m, w, sa, bias, c, outInt32, threads, activationGroupSize);
            return;
        }
        GemmArgs args = Args(a, m, w, sa, bias, c, outInt32, threads, isa, activationGroupSize);
        NativeMethods.Check(NativeMethods.Gemm(&args), operation);
    }

    private static void CheckGemm(long aLength, int m, PackedWeights w, long cLength, long? scalesLength, long biasLength)
    {
        if (m <= 0) throw new ArgumentOutOfRangeException(nameof(m), m, "rows (tokens) must be positive.");
        Expect(aLength, (long)m * w.K, "a", $"m × K = {m} × {w.K}");
        Expect(cLength, (long)m * w.N, "c", $"m × N = {m} × {w.N}");
        if (scalesLength is long s) Expect(s, m, "activationScales", "m");
        if (biasLength != 0) Expect(biasLength, w.N, "bias", "N (or empty)");
    }

    private static void Expect(long actual, long expected, string name, string what)
    {
        if (actual != expected) throw new ArgumentException($"{name}: expected {what} = {expected} elements, found {actual}.", name);
    }
}
