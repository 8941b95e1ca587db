namespace AdaTSQ.Kernels;

/// <summary>How a kernel call runs. Immutable; the defaults suit most callers.</summary>
public sealed record KernelOptions
{
    /// <summary>The name of the environment variable that forces an ISA path when <see cref="Isa"/> is <see cref="KernelIsa.Auto"/>.</summary>
    public const string IsaEnvironmentVariable = "ADATSQ_KERNEL_ISA";

    /// <summary>The defaults: <see cref="KernelIsa.Auto"/>, one thread per processor.</summary>
    public static KernelOptions Default { get; } = new();

    /// <summary>The ISA path. Default <see cref="KernelIsa.Auto"/>.</summary>
    public KernelIsa Isa { get; init; } = KernelIsa.Auto;

    /// <summary>Threads the work is split over; 0 (the default) means <see cref="Environment.ProcessorCount"/>.</summary>
    public int Threads { get; init; }

    /// <summary>The thread count a call uses: <see cref="Threads"/>, or the processor count when 0.</summary>
    public int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;
}
