using AdaTSQ.Kernels.Interop;

namespace AdaTSQ.Kernels;

/// <summary>
/// What this machine offers: whether libadatsq_kernels loaded, which native ISA paths the CPU
/// supports, and how <see cref="KernelIsa.Auto"/> resolves.
/// </summary>
public static class NativeKernels
{
    private static readonly Lazy<(bool Loaded, int Mask, KernelIsa Best, string? Reason)> State = new(Probe);

    /// <summary>True when the native library loaded and has the expected ABI.</summary>
    public static bool IsAvailable => State.Value.Loaded;

    /// <summary>Why the native library is not available (null when it is).</summary>
    public static string? UnavailableReason => State.Value.Reason;

    /// <summary>The best native path, or <see cref="KernelIsa.Managed"/> when the library is missing.</summary>
    public static KernelIsa BestIsa => State.Value.Loaded ? State.Value.Best : KernelIsa.Managed;

    /// <summary>True when <paramref name="isa"/> can run here (<see cref="KernelIsa.Managed"/> always can).</summary>
    public static bool IsSupported(KernelIsa isa) => isa switch
    {
        KernelIsa.Auto or KernelIsa.Managed => true,
        KernelIsa.Scalar or KernelIsa.Avx2 or KernelIsa.AvxVnni or KernelIsa.Avx512Vnni => State.Value.Loaded && (State.Value.Mask & (1 << (int)isa)) != 0,
        _ => false,
    };

    /// <summary>Every path that can run here, best first.</summary>
    public static IReadOnlyList<KernelIsa> SupportedIsas =>
        new[] { KernelIsa.Avx512Vnni, KernelIsa.AvxVnni, KernelIsa.Avx2, KernelIsa.Scalar, KernelIsa.Managed }.Where(IsSupported).ToArray();

    /// <summary>
    /// Where the native paths run their threads. True (the default): on the thread team of the GNU
    /// OpenMP runtime that libtorch has loaded into the process, when there is one, so the kernels do
    /// not compete with libtorch's spinning OpenMP workers; otherwise on the library's own threads.
    /// False: always on the library's own threads.
    /// </summary>
    public static bool ShareTorchThreads
    {
        get => _shareTorchThreads;
        set
        {
            if (IsAvailable) Interop.NativeMethods.Check(Interop.NativeMethods.SetThreadBackend(value ? 0 : 1), nameof(ShareTorchThreads));
            _shareTorchThreads = value;
        }
    }

    private static bool _shareTorchThreads = true;

    /// <summary>True when the last multi-threaded native call ran on libtorch's OpenMP team (see <see cref="ShareTorchThreads"/>).</summary>
    internal static bool LastCallUsedOpenMp => IsAvailable && Interop.NativeMethods.LastRunUsedOpenMp() != 0;

    /// <summary>
    /// The concrete path a call with <paramref name="requested"/> runs on. <see cref="KernelIsa.Auto"/>
    /// reads <see cref="KernelOptions.IsaEnvironmentVariable"/>, then takes <see cref="BestIsa"/>.
    /// </summary>
    /// <exception cref="KernelIsaUnavailableException">The requested (or environment-forced) path cannot run here.</exception>
    /// <exception cref="ArgumentException">The environment variable holds an unknown name.</exception>
    public static KernelIsa Resolve(KernelIsa requested)
    {
        var isa = requested;
        string source = "KernelOptions.Isa";
        if (isa == KernelIsa.Auto)
        {
            var env = Environment.GetEnvironmentVariable(KernelOptions.IsaEnvironmentVariable);
            if (string.IsNullOrWhiteSpace(env)) return BestIsa;
            isa = ParseIsa(env);
            source = $"{KernelOptions.IsaEnvironmentVariable}={env}";
        }
        if (!Enum.IsDefined(isa))
            throw new ArgumentOutOfRangeException(nameof(requested), requested, "not a KernelIsa value.");
        if (!IsSupported(isa))
        {
            string why = !IsAvailable ? $"the native library is not available ({UnavailableReason})"
                : "this CPU (or the compiled library) does not support it";
            throw new KernelIsaUnavailableException(isa, $"Kernel ISA {isa} (from {source}) cannot run here: {why}. Available: {string.Join(", ", SupportedIsas)}.");
        }
        return isa;
    }

    /// <summary>Parses an ISA name as used by the environment variable (case-insensitive).</summary>
    public static KernelIsa ParseIsa(string name) => name.Trim().ToLowerInvariant() switch
    {
        "auto" => KernelIsa.Auto,
        "avx512vnni" or "avx512_vnni" => KernelIsa.Avx512Vnni,
        "avxvnni" or "avx_vnni" => KernelIsa.AvxVnni,
        "avx2" => KernelIsa.Avx2,
        "scalar" => KernelIsa.Scalar,
        "managed" => KernelIsa.Managed,
        _ => throw new ArgumentException($"Unknown kernel ISA '{name}': use avx512vnni, avxvnni, avx2, scalar, managed or auto.", nameof(name)),
    };

    private static (bool, int, KernelIsa, string?) Probe()
    {
        try
        {
            int abi = NativeMethods.AbiVersionOf();
            if (abi != NativeMethods.AbiVersion)
                return (false, 0, KernelIsa.Managed, $"libadatsq_kernels has ABI version {abi}, expected {NativeMethods.AbiVersion}");
            return (true, NativeMethods.SupportedIsas(), (KernelIsa)NativeMethods.BestIsa(), null);
        }
        catch (DllNotFoundException e)
        {
            return (false, 0, KernelIsa.Managed, $"libadatsq_kernels could not be loaded: {e.Message}");
        }
        catch (EntryPointNotFoundException e)
        {
            return (false, 0, KernelIsa.Managed, $"libadatsq_kernels lacks an entry point: {e.Message}");
        }
    }
}
