using AdaTSQ.Kernels.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>
/// The integer kernels on CUDA tensors, through the opt-in native library libadatsq_kernels_cuda
/// (built by <c>AdaTSQ.Kernels/native/cuda/build.sh</c> with nvcc; not part of <c>dotnet build</c>).
/// Same conventions as <see cref="TorchIntegerGemm"/>: symmetric weight codes (int8 <c>[N, K]</c>, or
/// uint8 <c>[N, ceil(K/2)]</c> holding two signed 4-bit codes per byte, low nibble = even column),
/// float32 weight scales <c>[N, groups]</c> (per channel when the group size is 0), per-token
/// activation scales, <c>C[m, n] = Σ_k A[m, k]·W[n, k]</c> with the fused epilogue. Every argument
/// check (CUDA device, dtype, contiguity, shape) runs before any native call and throws an
/// <see cref="ArgumentException"/> (<see cref="ObjectDisposedException"/> for a disposed tensor, named
/// by <see cref="ObjectDisposedException.ObjectName"/>); a missing library or device throws
/// <see cref="CudaKernelsUnavailableException"/>. Tensor arguments are held (a private alias on their
/// storage) until the kernels have been enqueued, so disposing one on another thread meanwhile is
/// safe (libtorch's caching allocator then reuses the block only in stream order). Kernels run on
/// libtorch's legacy default stream.
/// These kernels compile for sm_80 / sm_90 but have not yet run on a GPU.
/// </summary>
public static unsafe class CudaIntegerGemm
{
    private static readonly Lazy<(int Devices, string? Reason)> Probe = new(ProbeLibrary);

    /// <summary>True when libadatsq_kernels_cuda loads, has the expected ABI, and reports at least one CUDA device.</summary>
    public static bool IsAvailable => Probe.Value.Devices > 0;

    /// <summary>Why <see cref="IsAvailable"/> is false (null when it is true).</summary>
    public static string? UnavailableReason => Probe.Value.Reason;

    /// <summary>The number of CUDA devices the library sees (0 without the library, a driver or a device).</summary>
    public static int DeviceCount => Probe.Value.Devices;

    /// <summary>
    /// Dynamic per-token quantization of a float32 CUDA tensor <paramref name="x"/> <c>[..., K]</c> to
    /// <paramref name="bits"/>-bit codes (2–8, stored as int8, same shape) and float32 scales <c>[...]</c>
    /// on the same device: <c>scale = max|x_row|·clipRatio / (2^(bits−1) − 1)</c>, codes rounded half to even.
    /// </summary>
    /// <param name="x">Float32 CUDA activations <c>[..., K]</c>.</param>
    /// <param name="bits">Activation bits, 2–8.</param>
    /// <param name="clipRatio">Fraction of each row's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="groupSize">Must be 0: per-token × per-group activation scales are not implemented on CUDA
    /// (<see cref="NotSupportedException"/>; the CPU kernels, <see cref="TorchIntegerGemm"/>, have them).</param>
    /// <exception cref="NotSupportedException"><paramref name="groupSize"/> is not 0.</exception>
    public static (Tensor Codes, Tensor Scales) QuantizeActivations(Tensor x, int bits = 8, double clipRatio = 1.0, int groupSize = 0)
    {
        RefuseActivationGroups(groupSize, "QuantizeActivations");
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "activation bits must be 2–8.");
        if (!(clipRatio > 0 && clipRatio <= 1)) throw new ArgumentOutOfRangeException(nameof(clipRatio), clipRatio, "clipRatio must be in (0, 1].");
        CheckCuda(x, nameof(x), ScalarType.Float32, null);
        if (x.Dimensions < 1 || x.numel() == 0) throw new ArgumentException($"x: expected a non-empty tensor [..., K], got shape [{Shape(x)}].", nameof(x));
        long k = x.shape[^1], m = x.numel() / k;
        if (m > int.MaxValue) throw new ArgumentException($"x: at most {int.MaxValue} rows, got {m}.", nameof(x));
        EnsureAvailable("QuantizeActivations");
        using var px = PinnedTensor.Take(x, nameof(x));
        var codes = torch.empty(x.shape, ScalarType.Int8, x.device);
        var scales = torch.empty(x.shape[..^1], ScalarType.Float32, x.device);
        try
        {
            CudaNativeMethods.Check(CudaNativeMethods.QuantizeRows((float*)px.Address, m, k, k, bits, (float)clipRatio,
                (sbyte*)Data(codes), k, (float*)Data(scales), x.device_index, null), "QuantizeActivations");
            return (codes, scales);  // this call's own tensors, referenced here: not finalized mid-call
        }
        catch { codes.Dispose(); scales.Dispose(); throw; }
    }

    /// <summary>
    /// Integer GEMM with the fused epilogue on CUDA tensors: int8 activation codes <c>[..., K]</c> and
    /// their float32 per-token scales (one per row), weight codes (int8 <c>[N, K]</c> for
    /// <paramref name="weightBits"/> 5–8, uint8 packed <c>[N, ceil(K/2)]</c> for 2–4), float32 weight
    /// scales with N × groups elements (groups = ceil(K / <paramref name="groupSize"/>), 1 when it is 0),
    /// optional float32 bias <c>[N]</c>. Returns float32 <c>[..., N]</c> on the same device.
    /// </summary>
    public static Tensor Gemm(Tensor activationCodes, Tensor activationScales, Tensor weightCodes, Tensor weightScales,
        int weightBits, int groupSize = 0, Tensor? bias = null)
    {
        if (weightBits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(weightBits), weightBits, "weight bits must be 2–8.");
        if (groupSize < 0) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "groupSize must be ≥ 0 (0 = per channel).");
        CheckCuda(activationCodes, nameof(activationCodes), ScalarType.Int8, null);
        var device = activationCodes.device;
        CheckCuda(activationScales, nameof(activationScales), ScalarType.Float32, device);
        CheckCuda(weightCodes, nameof(weightCodes), weightBits <= 4 ? ScalarType.Byte : ScalarType.Int8, device);
        CheckCuda(weightScales, nameof(weightScales), ScalarType.Float32, device);
        if (bias is not null) CheckCuda(bias, nameof(bias), ScalarType.Float32, device);

        if (activationCodes.Dimensions < 1 || activationCodes.numel() == 0)
            throw new ArgumentException($"activationCodes: expected a non-empty tensor [..., K], got shape [{Shape(activationCodes)}].", nameof(activationCodes));
        long k = activationCodes.shape[^1], m = activationCodes.numel() / k;
        var (n, _) = CheckWeights(weightCodes, weightScales, weightBits, groupSize, k, bias);
        if (activationScales.numel() != m && activationScales.numel() % m == 0 && activationScales.numel() / m > 1)
            RefuseActivationGroups(checked((int)(k / (activationScales.numel() / m))), "Gemm");
        if (activationScales.numel() != m)
            throw new ArgumentException($"activationScales: expected one scale per row ({m}), got shape [{Shape(activationScales)}].", nameof(activationScales));
        if ((m + 63) / 64 > 65535) throw new ArgumentException($"activationCodes: at most {65535L * 64} rows, got {m}.", nameof(activationCodes));

        EnsureAvailable("Gemm");
        long ldw = weightCodes.shape[1];
        using var pa = PinnedTensor.Take(activationCodes, nameof(activationCodes));
        using var psa = PinnedTensor.Take(activationScales, nameof(activationScales));
        using var pw = PinnedTensor.Take(weightCodes, nameof(weightCodes));
        using var psw = PinnedTensor.Take(weightScales, nameof(weightScales));
        using var pb = PinnedTensor.Take(bias, nameof(bias));
        var y = torch.empty([.. activationCodes.shape[..^1], n], ScalarType.Float32, device);
        try
        {
            CudaNativeMethods.Check(CudaNativeMethods.Gemm((sbyte*)pa.Address, k, (float*)psa.Address,
                (void*)pw.Address, ldw, weightBits, (float*)psw.Address, groupSize,
                (float*)pb.Address, (float*)Data(y), n, m, n, k, device.index, null), "Gemm");
            return y;  // this call's own tensor, referenced here: not finalized mid-call
        }
        catch { y.Dispose(); throw; }
    }

    /// <summary>
    /// A quantized linear layer on CUDA: per-token quantization of float32 <paramref name="x"/>
    /// <c>[..., K]</c> to <paramref name="activationBits"/> (8: W8A8 / W4A8; 4: W4A4), then
    /// <see cref="Gemm"/>. Returns float32 <c>[..., N]</c>.
    /// </summary>
    /// <param name="x">Float32 CUDA activations <c>[..., K]</c>.</param>
    /// <param name="weightCodes">Weight codes: int8 <c>[N, K]</c> (5–8 bits) or uint8 <c>[N, ceil(K/2)]</c> (2–4 bits).</param>
    /// <param name="weightScales">Float32 weight scales, N × groups elements.</param>
    /// <param name="weightBits">Weight bits, 2–8.</param>
    /// <param name="activationBits">Activation bits, 2–8.</param>
    /// <param name="groupSize">Weight group size; 0 for per-channel scales.</param>
    /// <param name="bias">Float32 bias <c>[N]</c>, or null.</param>
    /// <param name="clipRatio">Fraction of each row's max |x| mapped to the largest code, (0, 1].</param>
    /// <param name="activationGroupSize">Must be 0: per-token × per-group activation scales are not implemented on CUDA
    /// (<see cref="NotSupportedException"/>; the CPU kernels, <see cref="TorchIntegerGemm"/>, have them).</param>
    /// <exception cref="NotSupportedException"><paramref name="activationGroupSize"/> is not 0.</exception>
    public static Tensor Linear(Tensor x, Tensor weightCodes, Tensor weightScales, int weightBits, int activationBits = 8,
        int groupSize = 0, Tensor? bias = null, double clipRatio = 1.0, int activationGroupSize = 0)
    {
        RefuseActivationGroups(activationGroupSize, "Linear");
        if (weightBits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(weightBits), weightBits, "weight bits must be 2–8.");
        if (activationBits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(activationBits), activationBits, "activation bits must be 2–8.");
        if (groupSize < 0) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "groupSize must be ≥ 0 (0 = per channel).");
        CheckCuda(x, nameof(x), ScalarType.Float32, null);
        CheckCuda(weightCodes, nameof(weightCodes), weightBits <= 4 ? ScalarType.Byte : ScalarType.Int8, x.device);
        CheckCuda(weightScales, nameof(weightScales), ScalarType.Float32, x.device);
        if (bias is not null) CheckCuda(bias, nameof(bias), ScalarType.Float32, x.device);
        if (x.Dimensions < 1 || x.numel() == 0) throw new ArgumentException($"x: expected a non-empty tensor [..., K], got shape [{Shape(x)}].", nameof(x));
        CheckWeights(weightCodes, weightScales, weightBits, groupSize, x.shape[^1], bias);
        var (codes, scales) = QuantizeActivations(x, activationBits, clipRatio);
        using (codes)
        using (scales)
            return Gemm(codes, scales, weightCodes, weightScales, weightBits, groupSize, bias);
    }

    // Per-token × per-group activation scales: not implemented by libadatsq_kernels_cuda (its GEMM applies one
    // activation scale per row in the epilogue; a per-group fold has not been written or run on a GPU).
    private static void RefuseActivationGroups(int activationGroupSize, string operation)
    {
        if (activationGroupSize != 0)
            throw new NotSupportedException($"CudaIntegerGemm.{operation}: per-token × per-group activation scales (group size {activationGroupSize}) are not implemented " +
                "on CUDA; use the CPU integer kernels (TorchIntegerGemm, IntegerLinearKernel) or fake quantization.");
    }

    private static (long N, long Groups) CheckWeights(Tensor weightCodes, Tensor weightScales, int weightBits, int groupSize, long k, Tensor? bias)
    {
        if (weightCodes.Dimensions != 2) throw new ArgumentException($"weightCodes: expected a 2-D tensor [N, …], got shape [{Shape(weightCodes)}].", nameof(weightCodes));
        long n = weightCodes.shape[0], width = weightBits <= 4 ? (k + 1) / 2 : k;
        if (weightCodes.shape[1] != width)
            throw new ArgumentException($"weightCodes: expected shape [N, {width}] for {weightBits}-bit weights and K = {k}, got [{Shape(weightCodes)}].", nameof(weightCodes));
        long group = groupSize == 0 || groupSize >= k ? k : groupSize, groups = (k + group - 1) / group;
        if (weightScales.numel() != n * groups)
            throw new ArgumentException($"weightScales: expected N × groups = {n} × {groups} = {n * groups} elements, got shape [{Shape(weightScales)}].", nameof(weightScales));
        if (bias is not null && bias.numel() != n)
            throw new ArgumentException($"bias: expected {n} elements, got shape [{Shape(bias)}].", nameof(bias));
        return (n, groups);
    }

    private static void CheckCuda(Tensor t, string name, ScalarType dtype, Device? device)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        TensorMemory.ThrowIfDisposed(t, name);
        if (t.device_type != DeviceType.CUDA)
            throw new ArgumentException($"{name}: the CUDA kernels take CUDA tensors, got a tensor on {t.device} (use TorchIntegerGemm for CPU tensors).", name);
        if (device is not null && t.device_index != device.index)
            throw new ArgumentException($"{name}: expected a tensor on {device}, got one on {t.device}.", name);
        if (t.dtype != dtype) throw new ArgumentException($"{name}: expected dtype {dtype}, got {t.dtype}.", name);
        if (!t.is_contiguous()) throw new ArgumentException($"{name}: expected a contiguous tensor (call .contiguous()), got strides [{string.Join(", ", t.stride())}].", name);
    }

    private static void EnsureAvailable(string operation)
    {
        if (!IsAvailable) throw new CudaKernelsUnavailableException($"{operation}: the CUDA kernels are unavailable: {UnavailableReason}.");
    }

    /// <summary>The address of the first element, through TorchSharp's public API (a device pointer for CUDA tensors).</summary>
    internal static nint Data(Tensor t) => TensorMemory.Address(t);

    private static string Shape(Tensor t) => string.Join(", ", t.shape);

    private static (int, string?) ProbeLibrary()
    {
        try
        {
            int abi = CudaNativeMethods.AbiVersionOf();
            if (abi != CudaNativeMethods.AbiVersion)
                return (0, $"libadatsq_kernels_cuda has ABI version {abi}, expected {CudaNativeMethods.AbiVersion}");
            int devices = CudaNativeMethods.DeviceCount();
            if (devices > 0) return (devices, null);
            string detail = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(CudaNativeMethods.LastError()) ?? "";
            return (0, "libadatsq_kernels_cuda loaded but reports no CUDA device" + (detail.Length > 0 ? $" ({detail})" : ""));
        }
        catch (DllNotFoundException e)
        {
            return (0, $"libadatsq_kernels_cuda could not be loaded (it is opt-in: build it with AdaTSQ.Kernels/native/cuda/build.sh): {e.Message}");
        }
        catch (EntryPointNotFoundException e)
        {
            return (0, $"libadatsq_kernels_cuda lacks an entry point: {e.Message}");
        }
    }
}
