namespace AdaTSQ.Kernels;

/// <summary>
/// The instruction-set path a kernel call runs on. <see cref="Auto"/> picks, in order: the
/// <c>ADATSQ_KERNEL_ISA</c> environment variable (<c>avx512vnni</c>, <c>avxvnni</c>, <c>avx2</c>,
/// <c>scalar</c>, <c>managed</c>), else the best native path this CPU supports, else
/// <see cref="Managed"/> when the native library is missing.
/// </summary>
public enum KernelIsa
{
    /// <summary>Resolve at run time (environment variable, then the best available path).</summary>
    Auto = 0,

    /// <summary>Native portable C++ loops.</summary>
    Scalar = 1,

    /// <summary>Native 256-bit AVX2 (vpmaddubsw/vpmaddwd with the sign trick; exact).</summary>
    Avx2 = 2,

    /// <summary>Native 256-bit AVX-VNNI (VEX vpdpbusd).</summary>
    AvxVnni = 3,

    /// <summary>Native 512-bit AVX-512 VNNI (EVEX vpdpbusd).</summary>
    Avx512Vnni = 4,

    /// <summary>The managed fallback (System.Runtime.Intrinsics: AVX-VNNI or AVX2 when present, else scalar C#).</summary>
    Managed = 100,
}
