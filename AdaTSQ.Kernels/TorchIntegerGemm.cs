using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AdaTSQ.Abstractions;
using AdaTSQ.Kernels.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>
/// The integer kernels on TorchSharp tensors. Inputs must be contiguous CPU tensors of the dtype
/// named per argument; every check runs before any native call and throws an
/// <see cref="ArgumentException"/> naming the argument and the problem (an
/// <see cref="ObjectDisposedException"/> whose <see cref="ObjectDisposedException.ObjectName"/> is the
/// argument's name for a disposed tensor).
/// </summary>
/// <remarks>
/// Each tensor argument is held for the length of the call (a private alias on its storage), so a
/// caller that disposes it on another thread while the call runs does not pull the memory from under
/// the kernels: the storage is freed when the call returns.
/// </remarks>
public static unsafe class TorchIntegerGemm
{
    /// <summary>
    /// Packs a weight given as codes and scales: int8 codes <c>[N, K]</c> for <paramref name="bits"/>
    /// 5–8, or uint8 bytes <c>[N, ceil(K/2)]</c> of two signed 4-bit codes (low nibble = even column)
    /// for <paramref name="bits"/> 2–4; float32 scales with N × groups elements (any shape, e.g. the
    /// <c>[N, groups, 1]</c> of <c>QuantParams</c>).
    /// </summary>
    public static PackedWeights PackWeights(Tensor codes, Tensor scales, int k, int bits, int groupSize = 0)
    {
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "weight bits must be 2–8.");
        CheckCpuContiguous(codes, nameof(codes), bits <= 4 ? ScalarType.Byte : ScalarType.Int8);
        CheckCpuContiguous(scales, nameof(scales), ScalarType.Float32);
        if (codes.Dimensions != 2) throw new ArgumentException($"codes: expected a 2-D tensor, got shape [{string.Join(", ", codes.shape)}].", nameof(codes));
        int n = checked((int)codes.shape[0]);
        int codeCount = checked((int)codes.numel()), scaleCount = checked((int)scales.numel());
        using var pc = PinnedTensor.Take(codes, nameof(codes));
        using var ps = PinnedTensor.Take(scales, nameof(scales));
        var scaleSpan = new ReadOnlySpan<float>((void*)ps.Address, scaleCount);
        return bits <= 4
            ? PackedWeights.FromInt4(new ReadOnlySpan<byte>((void*)pc.Address, codeCount), scaleSpan, n, k, groupSize)
            : PackedWeights.FromInt8(new ReadOnlySpan<sbyte>((void*)pc.Address, codeCount), scaleSpan, n, k, groupSize);
    }

    /// <summary>
    /// Dynamic per-token quantization of float32 <paramref name="x"/> <c>[..., K]</c>: int8 codes of
    /// the same shape and float32 scales of shape <c>[...]</c>.
    /// </summary>
    public static (Tensor Codes, Tensor Scales) QuantizeActivations(Tensor x, int bits, double clipRatio = 1.0, KernelOptions? options = null) =>
        QuantizeActivations(x, bits, 0, clipRatio, options);

    /// <summary>
    /// Dynamic per-token × per-group quantization of float32 <paramref name="x"/> <c>[..., K]</c>: int8 codes of the
    /// same shape and float32 scales <c>[..., K / groupSize]</c> (<c>[...]</c> when <paramref name="groupSize"/> is 0),
    /// each group quantized as <c>FakeQuantizer</c> does with a per-group activation spec.
    /// </summary>
    /// <param name="x">Float32 activations <c>[..., K]</c>.</param>
    /// <param name="bits">Activation bits, 2–8.</param>
    /// <param name="groupSize">Columns per scale (a divisor of K), or 0 for one scale per row.</param>
    /// <param name="clipRatio">Fraction of each group's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    public static (Tensor Codes, Tensor Scales) QuantizeActivations(Tensor x, int bits, int groupSize, double clipRatio = 1.0, KernelOptions? options = null)
    {
        CheckCpuContiguous(x, nameof(x), ScalarType.Float32);
        if (x.Dimensions < 1 || x.numel() == 0) throw new ArgumentException($"x: expected a non-empty tensor [..., K], got shape [{string.Join(", ", x.shape)}].", nameof(x));
        long k = x.shape[^1], m = x.numel() / k;
        if (groupSize < 0 || groupSize > 0 && k % groupSize != 0)
            throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, $"activation group size must be 0 (per token) or a positive divisor of K = {k}.");
        int count = checked((int)x.numel()), rows = checked((int)m);
        int scaleCount = checked(rows * (groupSize > 0 ? (int)(k / groupSize) : 1));
        using var px = PinnedTensor.Take(x, nameof(x));
        var codes = torch.empty(x.shape, ScalarType.Int8);
        var scales = groupSize > 0 ? torch.empty([.. x.shape[..^1], k / groupSize], ScalarType.Float32) : torch.empty(x.shape[..^1], ScalarType.Float32);
        try
        {
            // codes and scales are this call's own tensors: referenced below (returned), so never finalized mid-call.
            IntegerGemm.QuantizeActivations(new ReadOnlySpan<float>((void*)px.Address, count), rows, checked((int)k), bits, groupSize,
                new Span<sbyte>((void*)TensorMemory.Address(codes), count), new Span<float>((void*)TensorMemory.Address(scales), scaleCount), clipRatio, options);
            return (codes, scales);
        }
        catch { codes.Dispose(); scales.Dispose(); throw; }
    }

    /// <summary>
    /// A quantized linear layer: <c>y = dequant(quant(x) · Wᵀ) + bias</c> with per-token activation
    /// quantization to <paramref name="activationBits"/> (8: W8A8 / W4A8; 4: W4A4). <paramref name="x"/>
    /// is float32 <c>[..., K]</c>; the result is float32 <c>[..., N]</c>, the only tensor a call
    /// allocates (the activation quantization is fused into the GEMM on the native paths).
    /// </summary>
    /// <param name="x">Float32 activations <c>[..., K]</c>.</param>
    /// <param name="weights">Packed weights <c>[N, K]</c>.</param>
    /// <param name="activationBits">Activation bits, 2–8.</param>
    /// <param name="bias">Float32 bias with N elements, or null.</param>
    /// <param name="clipRatio">Fraction of each row's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="options">ISA and threads; null for the defaults.</param>
    /// <param name="ops">Work fused into the call (a LayerNorm + modulate prologue on x's rows
    /// before they are quantized, an activation and gated residual on the output), or null.</param>
    /// <param name="activationGroupSize">0 (default): one activation scale per row (per token). Positive: per-token ×
    /// per-group activation quantization, one scale per row and per group of that many columns of K, folded with the
    /// weight scales per group; it must divide K and be a multiple of the group <paramref name="weights"/> are packed with
    /// (<see cref="ActivationGrouping"/>), else <see cref="NotSupportedException"/>.</param>
    /// <param name="transforms">The layer's input scale (applied after the prologue, before quantization) and low-rank
    /// branch (its down-projection during the quantization pass, its up-projection added after the bias, before the
    /// epilogue), or null: see <see cref="LinearTransforms"/>.</param>
    public static Tensor Linear(Tensor x, PackedWeights weights, int activationBits, Tensor? bias = null, double clipRatio = 1.0, KernelOptions? options = null,
        FusedLinearOps? ops = null, int activationGroupSize = 0, LinearTransforms? transforms = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        CheckCpuContiguous(x, nameof(x), ScalarType.Float32);
        if (x.Dimensions < 1 || x.shape[^1] != weights.K)
            throw new ArgumentException($"x: expected last dimension K = {weights.K}, got shape [{string.Join(", ", x.shape)}].", nameof(x));
        if (bias is not null)
        {
            CheckCpuContiguous(bias, nameof(bias), ScalarType.Float32);
            if (bias.numel() != weights.N) throw new ArgumentException($"bias: expected {weights.N} elements, got shape [{string.Join(", ", bias.shape)}].", nameof(bias));
        }
        long m = x.numel() / weights.K;
        if (m == 0) throw new ArgumentException("x: has no rows.", nameof(x));
        long[] outShape = [.. x.shape[..^1], weights.N];
        long perSample = ops?.Validate(m, weights.K, weights.N, outShape, "Linear") ?? m;
        if (transforms is not null && transforms.IsEmpty) transforms = null;
        transforms?.Validate(weights.K, weights.N, "Linear");
        using var px = PinnedTensor.Take(x, nameof(x));
        using var pb = PinnedTensor.Take(bias, nameof(bias));
        using var pops = FusedLinearOpsNative.Pin(ops, transforms);
        LinearOps native = pops.ToNative(perSample, weights.K, weights.N);
        var y = torch.empty(outShape, ScalarType.Float32);
        try
        {
            IntegerGemm.LinearFused((float*)px.Address, checked((int)m), weights, activationBits, (float*)pb.Address,
                (float*)TensorMemory.Address(y), clipRatio, options ?? KernelOptions.Default, "Linear", pops.Any ? &native : null, activationGroupSize);
            return y;  // y, this call's own tensor, is referenced here: not finalized mid-call
        }
        catch { y.Dispose(); throw; }
    }

    /// <summary>
    /// The prologue of <paramref name="ops"/> alone (<see cref="FusedLinearOps.LayerNorm"/> must be set):
    /// <c>LayerNorm(x)·(1 + scale) + shift</c> per row of float32 <paramref name="x"/> <c>[..., K]</c>, with the
    /// same code the fused <see cref="Linear"/> runs before quantizing (so a fused call equals this followed
    /// by an unfused one bit for bit). Returns a new tensor.
    /// </summary>
    public static Tensor LayerNormModulate(Tensor x, FusedLinearOps ops, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(ops);
        CheckCpuContiguous(x, nameof(x), ScalarType.Float32);
        if (!ops.LayerNorm) throw new ArgumentException("LayerNormModulate: ops.LayerNorm is not set.", nameof(ops));
        if (x.Dimensions < 1 || x.numel() == 0) throw new ArgumentException($"x: expected a non-empty tensor [..., K], got shape [{string.Join(", ", x.shape)}].", nameof(x));
        long k = x.shape[^1], m = x.numel() / k;
        long perSample = ops.Validate(m, k, 1, x.shape, "LayerNormModulate");
        using var px = PinnedTensor.Take(x, nameof(x));
        using var pops = FusedLinearOpsNative.Pin(ops);
        var native = pops.ToNative(perSample, k, 1);
        var y = torch.empty(x.shape, ScalarType.Float32);
        try
        {
            IntegerGemm.LayerNormModulate((float*)px.Address, m, k, &native, (float*)TensorMemory.Address(y), options ?? KernelOptions.Default);
            return y;
        }
        catch { y.Dispose(); throw; }
    }

    /// <summary>
    /// The whole prologue alone, with the code the fused <see cref="Linear"/> runs before quantizing: <paramref name="ops"/>'
    /// LayerNorm + modulate (when set), then <paramref name="transforms"/>' input scale and rotation (each when set; its
    /// low-rank branch must be null). So a fused call equals this followed by an unfused call bit for bit. Returns a new tensor.
    /// </summary>
    public static Tensor Prologue(Tensor x, FusedLinearOps? ops, LinearTransforms? transforms, KernelOptions? options = null)
    {
        CheckCpuContiguous(x, nameof(x), ScalarType.Float32);
        if (x.Dimensions < 1 || x.numel() == 0) throw new ArgumentException($"x: expected a non-empty tensor [..., K], got shape [{string.Join(", ", x.shape)}].", nameof(x));
        if (ops is not null && ops.HasEpilogue) throw new ArgumentException("Prologue: ops has an epilogue; pass the prologue only.", nameof(ops));
        if (transforms is not null && (transforms.LowRankDown is not null || transforms.LowRankUp is not null))
            throw new ArgumentException("Prologue: the low-rank branch is not prologue work; pass the input scale and the rotation only.", nameof(transforms));
        if (transforms is not null && transforms.IsEmpty) transforms = null;
        if (ops is { LayerNorm: false } && ops.Shift is null && ops.Scale is null) ops = null;
        if (ops is null && transforms is null) throw new ArgumentException("Prologue: nothing to do (no LayerNorm, input scale or rotation).", nameof(ops));
        long k = x.shape[^1], m = x.numel() / k;
        long perSample = ops?.Validate(m, k, 1, x.shape, "Prologue") ?? m;
        transforms?.Validate(k, 1, "Prologue");
        using var px = PinnedTensor.Take(x, nameof(x));
        using var pops = FusedLinearOpsNative.Pin(ops, transforms);
        var native = pops.ToNative(perSample, k, 1);
        var y = torch.empty(x.shape, ScalarType.Float32);
        try
        {
            IntegerGemm.LayerNormModulate((float*)px.Address, m, k, &native, (float*)TensorMemory.Address(y), options ?? KernelOptions.Default);
            return y;
        }
        catch { y.Dispose(); throw; }
    }

    /// <summary>
    /// The epilogue of <paramref name="ops"/> alone, in place on float32 <paramref name="y"/> <c>[..., N]</c>:
    /// the activation, then <c>residual + gate·y</c>, with the code the fused <see cref="Linear"/> runs.
    /// </summary>
    public static void ApplyEpilogue(Tensor y, FusedLinearOps ops, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(ops);
        CheckCpuContiguous(y, nameof(y), ScalarType.Float32);
        if (y.Dimensions < 1 || y.numel() == 0) throw new ArgumentException($"y: expected a non-empty tensor [..., N], got shape [{string.Join(", ", y.shape)}].", nameof(y));
        long n = y.shape[^1], m = y.numel() / n;
        if (ops.HasPrologue) throw new ArgumentException("ApplyEpilogue: ops has a prologue (LayerNorm); pass the epilogue only.", nameof(ops));
        long perSample = ops.Validate(m, 1, n, y.shape, "ApplyEpilogue");
        using var py = PinnedTensor.Take(y, nameof(y));
        using var pops = FusedLinearOpsNative.Pin(ops);
        var native = pops.ToNative(perSample, 1, n);
        IntegerGemm.ApplyEpilogue((float*)py.Address, m, n, &native, options ?? KernelOptions.Default);
    }

    /// <summary>Checks a tensor argument: not disposed (<see cref="ObjectDisposedException"/> named <paramref name="name"/>), on the CPU, of <paramref name="dtype"/>, contiguous.</summary>
    internal static void CheckCpuContiguous(Tensor t, string name, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        TensorMemory.ThrowIfDisposed(t, name);
        if (t.device_type != DeviceType.CPU) throw new ArgumentException($"{name}: the integer kernels run on CPU tensors, got a tensor on {t.device}.", name);
        if (t.dtype != dtype) throw new ArgumentException($"{name}: expected dtype {dtype}, got {t.dtype}.", name);
        if (!t.is_contiguous()) throw new ArgumentException($"{name}: expected a contiguous tensor (call .contiguous()), got strides [{string.Join(", ", t.stride())}].", name);
    }
}
