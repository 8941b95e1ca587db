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
