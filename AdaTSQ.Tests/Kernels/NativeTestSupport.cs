using System.Runtime.InteropServices;
using AdaTSQ.Kernels;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// Decides whether a test of a native kernel path runs, fails or is skipped. The build produces
/// libadatsq_kernels.so on linux-x64, so there a library that is missing or does not load is a test
/// FAILURE (with <see cref="NativeKernels.UnavailableReason"/>). Only a path whose instructions the
/// CPU lacks is skipped, and the message names the ISA and the missing CPU flags.
/// </summary>
internal static class NativeTestSupport
{
    /// <summary>True where the build produces the native library (linux-x64).</summary>
    public static bool NativeLibraryExpected => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Fails the test when the native library should be loaded here and is not; skips it elsewhere.</summary>
    public static void RequireNativeLibrary()
    {
        if (NativeKernels.IsAvailable) return;
        if (NativeLibraryExpected)
            Assert.Fail($"libadatsq_kernels is not loaded on linux-x64, where the build produces it: {NativeKernels.UnavailableReason}. " +
                        "Rebuild (dotnet build runs CMake; a failed native build fails the build) and check that libadatsq_kernels.so is in the test output folder.");
        Assert.Ignore($"the native kernels are built on linux-x64 only, this is {RuntimeInformation.RuntimeIdentifier} ({NativeKernels.UnavailableReason}).");
    }

    /// <summary>
    /// Returns when <paramref name="isa"/> can run here (managed and auto always can). Fails when the
    /// native library should be loaded and is not, or when the CPU has every flag the path needs but
    /// the library does not offer it; skips (naming the ISA and the missing flags) when the CPU lacks one.
    /// </summary>
    public static void RequireIsa(KernelIsa isa)
    {
        if (isa is KernelIsa.Managed or KernelIsa.Auto) return;
        RequireNativeLibrary();
        if (NativeKernels.IsSupported(isa)) return;
        var needed = CpuFlagsFor(isa);
        var missing = needed.Where(f => !CpuFlags.Value.Contains(f)).ToArray();
        if (missing.Length == 0)
            Assert.Fail($"the CPU has every flag {isa} needs ({string.Join(", ", needed)}), but libadatsq_kernels does not offer it " +
                        $"(supported: {string.Join(", ", NativeKernels.SupportedIsas)}): was it compiled without that ISA?");
        Assert.Ignore($"ISA path {isa} needs the CPU flags {string.Join(", ", needed)}; this CPU ({CpuModel.Value}) lacks {string.Join(", ", missing)}.");
    }

    /// <summary>The /proc/cpuinfo flags the native library checks (with __builtin_cpu_supports) before it offers <paramref name="isa"/>.</summary>
    public static string[] CpuFlagsFor(KernelIsa isa) => isa switch
    {
        KernelIsa.Avx2 => ["avx2", "fma"],
        KernelIsa.AvxVnni => ["avx2", "avx_vnni"],
        KernelIsa.Avx512Vnni => ["avx512f", "avx512bw", "avx512_vnni"],
        _ => [],
    };

    /// <summary>The CPU flags of /proc/cpuinfo (empty where there is none).</summary>
    public static readonly Lazy<HashSet<string>> CpuFlags = new(() =>
    {
        var line = CpuInfoLine("flags");
        return line is null ? [] : [.. line.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
    });

    private static readonly Lazy<string> CpuModel = new(() => CpuInfoLine("model name") ?? RuntimeInformation.ProcessArchitecture.ToString());

    private static string? CpuInfoLine(string key)
    {
        if (!File.Exists("/proc/cpuinfo")) return null;
        foreach (var line in File.ReadLines("/proc/cpuinfo"))
        {
            int colon = line.IndexOf(':');
            if (colon > 0 && line[..colon].Trim() == key) return line[(colon + 1)..].Trim();
        }
        return null;
    }
}
