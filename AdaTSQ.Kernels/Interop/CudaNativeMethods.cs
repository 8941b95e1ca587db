using System.Runtime.InteropServices;

namespace AdaTSQ.Kernels.Interop;

/// <summary>Status codes of the CUDA library (<c>adatsq_cuda_status</c> in native/cuda/adatsq_kernels_cuda.h).</summary>
internal enum CudaStatus
{
    Ok = 0,
    BadArgument = 1,
    NoDevice = 2,
    LaunchFailed = 3,
}

/// <summary>
/// P/Invoke declarations of the opt-in libadatsq_kernels_cuda (built by native/cuda/build.sh, not by
/// <c>dotnet build</c>). Every pointer is a device pointer.
/// </summary>
internal static unsafe partial class CudaNativeMethods
{
    public const string Library = "adatsq_kernels_cuda";
    public const int AbiVersion = 1;

    [LibraryImport(Library, EntryPoint = "adatsq_cuda_abi_version")]
    public static partial int AbiVersionOf();

    [LibraryImport(Library, EntryPoint = "adatsq_cuda_device_count")]
    public static partial int DeviceCount();

    [LibraryImport(Library, EntryPoint = "adatsq_cuda_last_error")]
    public static partial nint LastError();

    [LibraryImport(Library, EntryPoint = "adatsq_cuda_quantize_rows")]
    public static partial CudaStatus QuantizeRows(float* x, long m, long k, long ldx, int bits, float clip, sbyte* q, long ldq, float* scale, int device, void* stream);

    [LibraryImport(Library, EntryPoint = "adatsq_cuda_gemm")]
    public static partial CudaStatus Gemm(sbyte* a, long lda, float* activationScale, void* w, long ldw, int weightBits, float* weightScale, long group,
        float* bias, float* c, long ldc, long m, long n, long k, int device, void* stream);

    /// <summary>Turns a failed status into an exception, right after the call.</summary>
    public static void Check(CudaStatus status, string operation)
    {
        if (status == CudaStatus.Ok) return;
        string detail = Marshal.PtrToStringUTF8(LastError()) ?? "";
        if (detail.Length > 0) detail = $" ({detail})";
        throw status switch
        {
            CudaStatus.NoDevice => new CudaKernelsUnavailableException($"{operation}: no usable CUDA device{detail}."),
            CudaStatus.BadArgument => new KernelException($"{operation}: the CUDA library rejected the arguments (a bug: the managed checks should have caught it){detail}."),
            CudaStatus.LaunchFailed => new KernelException($"{operation}: the CUDA kernel launch failed{detail}."),
            _ => new KernelException($"{operation}: the CUDA library failed with status {(int)status}{detail}."),
        };
    }
}
