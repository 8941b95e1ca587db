using AdaTSQ.Kernels;

namespace AdaTSQ.Tests.Kernels;

/// <summary>The native library is there where the build produces it, and offers every path the CPU can run.</summary>
public class NativeLibraryTests
{
    [Test]
    public void NativeLibraryIsLoadedOnLinuxX64()
    {
        if (!NativeTestSupport.NativeLibraryExpected)
            Assert.Ignore($"the build produces libadatsq_kernels.so on linux-x64 only; this is {System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}.");
        Assert.That(NativeKernels.IsAvailable, Is.True, () => $"libadatsq_kernels is not loaded: {NativeKernels.UnavailableReason}");
        Assert.That(NativeKernels.UnavailableReason, Is.Null);
        Assert.That(NativeKernels.IsSupported(KernelIsa.Scalar), Is.True, "the portable path is always compiled in");
        Assert.That(NativeKernels.BestIsa, Is.Not.EqualTo(KernelIsa.Managed));
    }

    [Test]
    public void EveryPathTheCpuCanRunIsOffered([Values(KernelIsa.Avx2, KernelIsa.AvxVnni, KernelIsa.Avx512Vnni)] KernelIsa isa)
    {
        NativeTestSupport.RequireNativeLibrary();
        var flags = NativeTestSupport.CpuFlagsFor(isa);
        bool cpuHasIt = flags.All(NativeTestSupport.CpuFlags.Value.Contains);
        Assert.That(NativeKernels.IsSupported(isa), Is.EqualTo(cpuHasIt),
            $"{isa} needs the CPU flags {string.Join(", ", flags)} (this CPU {(cpuHasIt ? "has them" : "lacks some")}); the library offers {string.Join(", ", NativeKernels.SupportedIsas)}");
    }
}
