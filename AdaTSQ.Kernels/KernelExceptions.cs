namespace AdaTSQ.Kernels;

/// <summary>A requested ISA path is not available on this machine (CPU, OS or native library).</summary>
public sealed class KernelIsaUnavailableException : NotSupportedException
{
    /// <summary>Creates the exception for <paramref name="isa"/> with an explanation.</summary>
    public KernelIsaUnavailableException(KernelIsa isa, string message) : base(message) => Isa = isa;

    /// <summary>The ISA that was asked for.</summary>
    public KernelIsa Isa { get; }
}

/// <summary>The native library reported a failure that the managed checks did not foresee.</summary>
public sealed class KernelException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public KernelException(string message) : base(message) { }
}

/// <summary>
/// The CUDA kernels cannot run here: libadatsq_kernels_cuda is not built or not found (it is opt-in,
/// see native/cuda/build.sh), it has the wrong ABI version, or no CUDA device / driver is present.
/// </summary>
public sealed class CudaKernelsUnavailableException : NotSupportedException
{
    /// <summary>Creates the exception with a message saying why.</summary>
    public CudaKernelsUnavailableException(string message) : base(message) { }
}
