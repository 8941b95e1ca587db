using System.Runtime.InteropServices;

namespace AdaTSQ.Kernels.Interop;

/// <summary>Status codes of the native library (<c>adatsq_status</c> in native/include/adatsq_kernels.h).</summary>
internal enum NativeStatus
{
    Ok = 0,
    BadArgument = 1,
    IsaUnavailable = 2,
    OutOfMemory = 3,
    Internal = 4,
}

/// <summary>Mirror of <c>adatsq_gemm_args</c>; blittable, passed by pointer.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct GemmArgs
{
    public sbyte* A;
    public long Lda;
    public byte* B;
    public int* ColSum;
    public float* WeightScale;
    public float* ActivationScale;
    public float* Bias;
    public void* C;
    public long Ldc;
    public long M, N, K;
    public long PaddedN;
    public long Group;
    public long Groups;
    public int WeightBits;
    public int OutInt32;
    public int Threads;
    public int Isa;
    /// <summary>ABI 4: 0 = one activation scale per row; else columns of K per activation scale (<c>a_group</c>).</summary>
    public long ActivationGroup;
    /// <summary>ABI 4: row stride of the <c>[M, K / a_group]</c> activation scales (<c>ldsa</c>).</summary>
    public long LdActivationScale;
}

/// <summary>Mirror of <c>adatsq_linear_ops</c>: the prologue / epilogue fused around a linear call; blittable.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LinearOps
{
    public int LayerNorm;
    public float Eps;
    public float* Shift;
    public float* Scale;
    public long LdMod;
    public long RowsPerSample;
    public int Activation;
    public float* Residual;
    public long LdResidual;
    public float* Gate;
    public long LdGate;
    /// <summary>ABI 5: <c>[K]</c> multiplier of each prologue row (SmoothQuant's 1 / s), or null (<c>input_scale</c>).</summary>
    public float* InputScale;
    /// <summary>ABI 5: rank of the low-rank branch, 0 = none (<c>rank</c>).</summary>
    public long Rank;
    /// <summary>ABI 5: <c>[rank, LdDown]</c> down factor L2 (<c>lr_down</c>).</summary>
    public float* LowRankDown;
    public long LdDown;
    /// <summary>ABI 5: <c>[N, LdUp]</c> up factor L1 (<c>lr_up</c>).</summary>
    public float* LowRankUp;
    public long LdUp;
    /// <summary>ABI 5: the rotation's power-of-two segment, 0 = no rotation (<c>rot_block</c>).</summary>
    public long RotBlock;
    /// <summary>ABI 5: order m of the dense factor, 1 = none (<c>rot_order</c>).</summary>
    public long RotOrder;
    public float* RotHm;
    public float* RotSigns;
    public float RotDivisor;
}

/// <summary>P/Invoke declarations of libadatsq_kernels (source-generated; all arguments blittable).</summary>
internal static unsafe partial class NativeMethods
{
    public const string Library = "adatsq_kernels";
    public const int AbiVersion = 5;

    [LibraryImport(Library, EntryPoint = "adatsq_abi_version")]
    public static partial int AbiVersionOf();

    [LibraryImport(Library, EntryPoint = "adatsq_supported_isas")]
    public static partial int SupportedIsas();

    [LibraryImport(Library, EntryPoint = "adatsq_best_isa")]
    public static partial int BestIsa();

    [LibraryImport(Library, EntryPoint = "adatsq_quantize_rows")]
    public static partial NativeStatus QuantizeRows(int isa, float* x, long m, long k, long ldx, int bits, float clip, sbyte* q, long ldq, float* scale, int threads);

    [LibraryImport(Library, EntryPoint = "adatsq_quantize_groups")]
    public static partial NativeStatus QuantizeGroups(int isa, float* x, long m, long k, long ldx, int bits, float clip, long group, sbyte* q, long ldq, float* scale, long ldScale, int threads);

    [LibraryImport(Library, EntryPoint = "adatsq_gemm")]
    public static partial NativeStatus Gemm(GemmArgs* args);

    [LibraryImport(Library, EntryPoint = "adatsq_linear")]
    public static partial NativeStatus Linear(GemmArgs* args, float* x, long ldx, int activationBits, float clip);

    [LibraryImport(Library, EntryPoint = "adatsq_linear_ex")]
    public static partial NativeStatus LinearEx(GemmArgs* args, float* x, long ldx, int activationBits, float clip, LinearOps* ops);

    [LibraryImport(Library, EntryPoint = "adatsq_layernorm_modulate")]
    public static partial NativeStatus LayerNormModulate(int isa, float* x, long m, long k, long ldx, LinearOps* ops, float* output, long ldo, int threads);

    [LibraryImport(Library, EntryPoint = "adatsq_apply_epilogue")]
    public static partial NativeStatus ApplyEpilogue(int isa, float* c, long m, long n, long ldc, LinearOps* ops, int threads);

    [LibraryImport(Library, EntryPoint = "adatsq_set_thread_backend")]
    public static partial NativeStatus SetThreadBackend(int backend);

    [LibraryImport(Library, EntryPoint = "adatsq_last_run_used_openmp")]
    public static partial int LastRunUsedOpenMp();

    [LibraryImport(Library, EntryPoint = "adatsq_vnni_peak")]
    public static partial NativeStatus VnniPeak(int isa, long iterations, int threads, double* seconds, double* ops);

    [LibraryImport(Library, EntryPoint = "adatsq_last_error")]
    private static partial byte* LastErrorPointer();

    /// <summary>This thread's last native error message (thread-local in the library), or "" when it has none.</summary>
    public static string LastError()
    {
        try { return Marshal.PtrToStringUTF8((nint)LastErrorPointer()) ?? ""; }
        catch (EntryPointNotFoundException) { return ""; }   // an older library without the export
    }

    /// <summary>Turns a failed status into an exception, right after the call (on the calling thread, so the native message is this call's).</summary>
    public static void Check(NativeStatus status, string operation)
    {
        if (status == NativeStatus.Ok) return;
        string detail = LastError();
        detail = detail.Length == 0 ? "" : $" Native check: {detail}";
        switch (status)
        {
            case NativeStatus.OutOfMemory: throw new OutOfMemoryException($"{operation}: the native kernel could not allocate its scratch memory.{detail}");
            case NativeStatus.IsaUnavailable: throw new KernelException($"{operation}: the native library refused the ISA (not compiled in or not supported by this CPU).{detail}");
            case NativeStatus.BadArgument: throw new KernelException($"{operation}: the native library rejected the arguments (a bug: the managed checks should have caught it).{detail}");
            default: throw new KernelException($"{operation}: the native kernel failed with status {(int)status}.{detail}");
        }
    }
}
