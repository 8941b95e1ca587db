using AdaTSQ.Kernels;
using AdaTSQ.Kernels.Managed;

namespace AdaTSQ.Tests.Kernels;

/// <summary>Every kernel on every ISA path this machine supports, against plain loops.</summary>
[NonParallelizable]
public class IntegerGemmTests
{
    public static readonly string[] Paths = ["avx512vnni", "avxvnni", "avx2", "scalar", "managed-avxvnni", "managed", "managed-scalar"];

    private static readonly (int M, int N, int K)[] Shapes = [(1, 1, 1), (1, 50, 75), (37, 101, 75), (130, 97, 203), (9, 48, 64)];

    private static KernelOptions Options(string path, int threads)
    {
        ManagedGemm.UseAvx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported;
        ManagedGemm.UseAvxVnni = false;  // "managed" = the AVX2 loops
        if (path == "managed-scalar") { ManagedGemm.UseAvx2 = false; path = "managed"; }
        if (path == "managed-avxvnni")
        {
            if (!System.Runtime.Intrinsics.X86.AvxVnni.IsSupported) Assert.Ignore("the managed AVX-VNNI path needs the CPU flag avx_vnni (AvxVnni.IsSupported); this CPU lacks it.");
            ManagedGemm.UseAvxVnni = true;
            path = "managed";
        }
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        return new KernelOptions { Isa = isa, Threads = threads };
    }

    [TearDown]
    public void RestoreManaged()
    {
        ManagedGemm.UseAvx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported;
        ManagedGemm.UseAvxVnni = System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
        NativeKernels.ShareTorchThreads = true;
    }

    private static sbyte[] Codes(Random rng, long count, int limit) => Enumerable.Range(0, (int)count).Select(_ => (sbyte)rng.Next(-limit, limit + 1)).ToArray();

    private static byte[] PackNibbles(sbyte[] w, int n, int k)
    {
        int rowBytes = (k + 1) / 2;
        var packed = new byte[n * rowBytes];
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
                packed[j * rowBytes + p / 2] |= (byte)((w[j * k + p] & 0xF) << (p % 2 == 0 ? 0 : 4));
        return packed;
    }

    private static long Dot(sbyte[] a, sbyte[] b, int i, int j, int k, int from, int to)
    {
        long s = 0;
        for (int p = from; p < to; p++) s += a[i * k + p] * b[j * k + p];
        return s;
    }

    [Test]
    public void Int32IsExactOnEveryPath([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads, [Values(8, 4)] int bits)
    {
        var options = Options(path, threads);
        var rng = new Random(bits * 10 + threads);
        foreach (var (m, n, k) in Shapes)
        {
            var a = Codes(rng, (long)m * k, 127);
            a[0] = -128; // activations may use −128
            var b = Codes(rng, (long)n * k, bits == 8 ? 127 : 7);
            var scales = Enumerable.Repeat(1f, n).ToArray();
            using var w = bits == 8 ? PackedWeights.FromInt8(b, scales, n, k) : PackedWeights.FromInt4(PackNibbles(b, n, k), scales, n, k);
            var c = new int[m * n];
            IntegerGemm.Int32(a, m, w, c, options);
            var expected = new int[m * n];
            ReferenceGemm.Int8(a, b, expected, m, n, k);
            Assert.That(c, Is.EqualTo(expected), $"{path} W{bits} M={m} N={n} K={k} threads={threads}");
        }
    }

    [Test]
    public void DequantizingGemmMatchesTheReference([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads,
        [Values("W8", "W8g32", "W4", "W4g16", "W4A4g8")] string config)
    {
        var options = Options(path, threads);
        int bits = config.StartsWith("W8") ? 8 : 4;
        int aLimit = config.Contains("A4") ? 7 : 127;
        int group = config.Contains('g') ? int.Parse(config[(config.IndexOf('g') + 1)..]) : 0;
        var rng = new Random(config.GetHashCode() & 0xFFFF);
        // K = 1501: a 4-bit weight panel too large for the AVX-512 half-tile path (the fold through memory).
        foreach (var (m, n, k) in Shapes.Append((17, 60, 1501)))
        {
            int groups = group > 0 ? (k + group - 1) / group : 1;
            var a = Codes(rng, (long)m * k, aLimit);
            var b = Codes(rng, (long)n * k, bits == 8 ? 127 : 7);
            var sa = Enumerable.Range(0, m).Select(_ => (float)(rng.NextDouble() * 0.1 + 1e-3)).ToArray();
            var sb = Enumerable.Range(0, n * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
            var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            using var w = bits == 8 ? PackedWeights.FromInt8(b, sb, n, k, group) : PackedWeights.FromInt4(PackNibbles(b, n, k), sb, n, k, group);
            var c = new float[m * n];
            IntegerGemm.Gemm(a, sa, m, w, bias, c, options);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0, magnitude = 0;
                    for (int g = 0; g < groups; g++)
                    {
                        double term = sb[j * groups + g] * (double)Dot(a, b, i, j, k, g * (group > 0 ? group : k), Math.Min(k, (g + 1) * (group > 0 ? group : k)));
                        sum += term;
                        magnitude += Math.Abs(term);
                    }
                    double expected = sa[i] * sum + bias[j];
                    double tolerance = 1e-5 * (sa[i] * magnitude + Math.Abs(bias[j])) + 1e-12;
                    if (Math.Abs(c[i * n + j] - expected) > tolerance)
                        Assert.Fail($"{path} {config} M={m} N={n} K={k} threads={threads}: C[{i},{j}] = {c[i * n + j]}, expected {expected} ± {tolerance}.");
                }
        }
    }

    [Test]
    public void FusedLinearEqualsQuantizeThenGemm([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads,
        [Values("W8", "W8g32", "W4", "W4g16", "W4A4g8")] string config, [Values(true, false)] bool shareTorchThreads)
    {
        var options = Options(path, threads);
        using var _ = TorchSharp.torch.zeros(1); // libtorch (and its OpenMP runtime) loaded
        NativeKernels.ShareTorchThreads = shareTorchThreads;
        int bits = config.StartsWith("W8") ? 8 : 4;
        int aBits = config.Contains("A4") ? 4 : 8;
        int group = config.Contains('g') ? int.Parse(config[(config.IndexOf('g') + 1)..]) : 0;
        var rng = new Random(config.GetHashCode() & 0xFFFF ^ threads);
        // ragged shapes, M = 1, K not a multiple of 4 or of the group; a large shape first, then small
        // ones, so the reused per-thread scratch shrinks back correctly; more than one 128-row block
        foreach (var (m, n, k) in new[] { (300, 145, 203), (1, 1, 1), (1, 50, 75), (37, 101, 75), (130, 97, 203), (9, 48, 64), (129, 49, 9) })
        {
            int groups = group > 0 ? (k + group - 1) / group : 1;
            var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            for (int j = 0; j < k; j++) x[(m / 2) * k + j] = 0; // an all-zero row
            var b = Codes(rng, (long)n * k, bits == 8 ? 127 : 7);
            var sb = Enumerable.Range(0, n * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
            var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            using var w = bits == 8 ? PackedWeights.FromInt8(b, sb, n, k, group) : PackedWeights.FromInt4(PackNibbles(b, n, k), sb, n, k, group);
            var codes = new sbyte[m * k];
            var scales = new float[m];
            var expected = new float[m * n];
            IntegerGemm.Linear(x, m, w, aBits, bias, expected, codes, scales, options);
            var fused = new float[m * n];
            IntegerGemm.Linear(x, m, w, aBits, bias, fused, 1.0, options);
            Assert.That(fused, Is.EqualTo(expected), $"{path} {config} M={m} N={n} K={k} threads={threads}");
            var noBias = new float[m * n];
            IntegerGemm.Linear(x, m, w, aBits, ReadOnlySpan<float>.Empty, noBias, 0.9, options);
            IntegerGemm.QuantizeActivations(x, m, k, aBits, codes, scales, 0.9, options);
            IntegerGemm.Gemm(codes, scales, m, w, ReadOnlySpan<float>.Empty, expected, options);
            Assert.That(noBias, Is.EqualTo(expected), $"{path} {config} M={m} N={n} K={k} threads={threads}, clip 0.9, no bias");
            if (threads == 2 && m > 1 && !path.StartsWith("managed"))
                Assert.That(NativeKernels.LastCallUsedOpenMp, Is.EqualTo(shareTorchThreads), "which threads ran the last call");
        }
    }

    /// <summary>
    /// Full 8 × 48 tiles (on AVX-512: the epilogue in the k loop's assembly, 4-bit groups as half-tiles)
    /// and the ragged edge tiles (the C++ epilogue) must give the same bits for the same rows and columns.
    /// </summary>
    [Test]
    public void EdgeTilesGiveTheSameBitsAsFullTiles([ValueSource(nameof(Paths))] string path,
        [Values("W8", "W8g32", "W4", "W4g16", "W4g64big")] string config)
    {
        var options = Options(path, 2);
        int bits = config.StartsWith("W8") ? 8 : 4;
        int group = config switch { "W8g32" => 32, "W4g16" => 16, "W4g64big" => 64, _ => 0 };
        int k = config == "W4g64big" ? 1472 : 203, m = 16, n = 96;
        int groups = group > 0 ? (k + group - 1) / group : 1;
        var rng = new Random(11);
        var a = Codes(rng, (long)m * k, 127);
        var b = Codes(rng, (long)n * k, bits == 8 ? 127 : 7);
        var sa = Enumerable.Range(0, m).Select(_ => (float)(rng.NextDouble() * 0.1 + 1e-3)).ToArray();
        var sb = Enumerable.Range(0, n * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        using var w = bits == 8 ? PackedWeights.FromInt8(b, sb, n, k, group) : PackedWeights.FromInt4(PackNibbles(b, n, k), sb, n, k, group);
        var full = new float[m * n];
        IntegerGemm.Gemm(a, sa, m, w, bias, full, options);
        foreach (int rows in new[] { 1, 4, 5, 7 })  // a ragged last row block: one half, both halves
        {
            var part = new float[rows * n];
            IntegerGemm.Gemm(a.AsSpan(0, rows * k), sa.AsSpan(0, rows), rows, w, bias, part, options);
            Assert.That(part, Is.EqualTo(full.AsSpan(0, rows * n).ToArray()), $"{path} {config}: the first {rows} rows alone vs in full tiles");
        }
        // The same weights without their last column: the second 48-column panel becomes a ragged one.
        int n2 = n - 1;
        var b2 = b.AsSpan(0, n2 * k).ToArray();
        var sb2 = new float[n2 * groups];
        for (int j = 0; j < n2; j++) Array.Copy(sb, j * groups, sb2, j * groups, groups);
        using var w2 = bits == 8 ? PackedWeights.FromInt8(b2, sb2, n2, k, group) : PackedWeights.FromInt4(PackNibbles(b2, n2, k), sb2, n2, k, group);
        var narrow = new float[m * n2];
        IntegerGemm.Gemm(a, sa, m, w2, bias.AsSpan(0, n2), narrow, options);
        for (int i = 0; i < m; i++)
            Assert.That(narrow.AsSpan(i * n2, n2).ToArray(), Is.EqualTo(full.AsSpan(i * n, n2).ToArray()), $"{path} {config}: row {i} with {n2} columns vs {n}");
    }

    [Test]
    public void NoBiasMeansZeroBias([Values("avx512vnni", "managed")] string path)
    {
        var options = Options(path, 2);
        var rng = new Random(3);
        int m = 5, n = 7, k = 13;
        var a = Codes(rng, m * k, 127);
        var b = Codes(rng, n * k, 127);
        using var w = PackedWeights.FromInt8(b, Enumerable.Repeat(0.5f, n).ToArray(), n, k);
        var c = new float[m * n];
        IntegerGemm.Gemm(a, Enumerable.Repeat(2f, m).ToArray(), m, w, ReadOnlySpan<float>.Empty, c, options);
        Assert.That(c[1 * n + 2], Is.EqualTo((float)Dot(a, b, 1, 2, k, 0, k)));
    }

    [Test]
    public void ActivationQuantizationMatchesTheFakeQuantizerExactly([ValueSource(nameof(Paths))] string path, [Values(8, 4)] int bits)
    {
        var options = Options(path, 2);
        int m = 67, k = 75;
        using var x = TorchSharp.torch.randn(m, k, generator: new TorchSharp.torch.Generator(7)) * 3;
        using var _ = x[5].zero_(); // an all-zero row: the minimum scale
        var spec = AdaTSQ.Quantization.QuantSpec.Activation(bits);
        using var p = AdaTSQ.Quantization.FakeQuantizer.ComputeParams(x, spec);
        using var q = AdaTSQ.Quantization.FakeQuantizer.Quantize(x, spec, p);
        var xs = x.data<float>().ToArray();
        var codes = new sbyte[m * k];
        var scales = new float[m];
        IntegerGemm.QuantizeActivations(xs, m, k, bits, codes, scales, 1.0, options);
        Assert.That(scales, Is.EqualTo(p.Scale.reshape(-1).data<float>().ToArray()));
        Assert.That(codes.Select(v => (float)v).ToArray(), Is.EqualTo(q.reshape(-1).data<float>().ToArray()));
    }

    [Test]
    public void ManagedVectorQuantizationEqualsTheScalarLoopOnAnyRow([Values(8, 4)] int bits)
    {
        var options = Options("managed", 2);
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.Ignore("the managed vector quantization needs the CPU flag avx2 (Avx2.IsSupported); this CPU lacks it.");
        int m = 8, k = 77;  // 9 vectors of 8 and a tail of 5
        var rng = new Random(bits);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        Array.Clear(x, 0, k);                 // row 0: zeros (the minimum scale)
        x[1 * k + 10] = float.NaN;            // row 1: NaN in the vector part
        x[2 * k + 75] = float.NaN;            // row 2: NaN in the tail
        x[3 * k + 3] = float.PositiveInfinity;
        x[4 * k + 76] = float.NegativeInfinity;
        for (int i = 0; i < k; i++) x[5 * k + i] = (i - 38) * 0.5f;  // row 5: exact ties at ±0.5 steps
        x[6 * k + 20] = 1e-40f;               // row 6: a denormal among normals
        var codes = new sbyte[m * k];
        var scales = new float[m];
        IntegerGemm.QuantizeActivations(x, m, k, bits, codes, scales, 0.9, options);
        ManagedGemm.UseAvx2 = false;
        var scalarCodes = new sbyte[m * k];
        var scalarScales = new float[m];
        IntegerGemm.QuantizeActivations(x, m, k, bits, scalarCodes, scalarScales, 0.9, options);
        Assert.That(scales, Is.EqualTo(scalarScales));
        Assert.That(codes, Is.EqualTo(scalarCodes));
    }

    [Test]
    public void VnniPeakLoopRuns()
    {
        NativeTestSupport.RequireIsa(KernelIsa.Avx512Vnni);
        Assert.That(IntegerGemm.MeasureVnniPeakGops(KernelIsa.Avx512Vnni, 100_000, 1), Is.GreaterThan(1.0));
    }
}
