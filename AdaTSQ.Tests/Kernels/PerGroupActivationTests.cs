using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Kernels.Managed;
using AdaTSQ.Quantization;
using TorchSharp;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// Per-token × per-group activation scales (one scale per row and per group of K) on every ISA path
/// this machine supports: the quantization equals <see cref="FakeQuantizer"/> bit for bit, the GEMM with
/// grouped scales on both operands equals the double-precision reference, the fused linear call equals
/// quantize-then-GEMM bit for bit (also with the LayerNorm prologue), and bad groups are refused.
/// </summary>
[NonParallelizable]
public class PerGroupActivationTests
{
    private static readonly string[] Paths = IntegerGemmTests.Paths;

    /// <summary>Configs: weight bits / activation bits, activation group, weight group (0 = per channel).</summary>
    private static readonly string[] Configs =
        ["W8A8 a64 w0", "W4A4 a64 w0", "W3A3 a64 w0", "W4A4 a32 w0", "W4A4 a128 w0", "W4A4 a64 w32", "W8A8 a64 w32", "W8A8 a64 w128",
         "W4A4 a32 w64", "W4A8 a64 w64", "W8A4 a32 w0", "W4A4 a16 w16"];

    // M, N not multiples of the tiles (4 / 8 rows, 48 columns); K a multiple of 128; one K past the
    // AVX-512 half-tile limit; more than one 128-row block.
    private static readonly (int M, int N, int K)[] Shapes = [(1, 1, 128), (37, 101, 256), (130, 97, 384), (9, 48, 128), (17, 60, 1536)];

    private static KernelOptions Options(string path, int threads)
    {
        ManagedGemm.UseAvx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported;
        ManagedGemm.UseAvxVnni = false;
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
    }

    private static (int WBits, int ABits, int AGroup, int WGroup) Parse(string config)
    {
        var parts = config.Split(' ');
        int wBits = parts[0][1] - '0', aBits = parts[0][3] - '0';
        return (wBits, aBits, int.Parse(parts[1][1..]), int.Parse(parts[2][1..]));
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

    /// <summary>Weights of <paramref name="wBits"/> bits with scales at <paramref name="wGroup"/>, packed for activations in groups of <paramref name="aGroup"/>.</summary>
    private static PackedWeights Pack(sbyte[] b, float[] sb, int n, int k, int wBits, int wGroup, int aGroup)
    {
        int group = ActivationGrouping.PackingGroup(wGroup, aGroup, k, wBits);
        var scales = ActivationGrouping.ReplicateScales(sb, n, k, wGroup, group);
        return wBits > 4 ? PackedWeights.FromInt8(b, scales, n, k, group) : PackedWeights.FromInt4(PackNibbles(b, n, k), scales, n, k, group);
    }

    [Test]
    public void GroupedQuantizationMatchesTheFakeQuantizerExactly([ValueSource(nameof(Paths))] string path, [Values(8, 4, 3)] int bits,
        [Values(32, 64, 128)] int group)
    {
        var options = Options(path, 2);
        int m = 67, k = 256;
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(m, k, generator: new torch.Generator(7)) * 3;
        x[5].zero_();                 // an all-zero row: the minimum scale in every group
        x[9].narrow(0, 0, group).zero_();   // one all-zero group
        x[11].narrow(0, 3, 1).fill_(80f);   // an outlier in one group only
        var spec = QuantSpec.Activation(bits, group);
        using var p = FakeQuantizer.ComputeParams(x, spec);
        var q = FakeQuantizer.Quantize(x, spec, p);
        var xs = x.data<float>().ToArray();
        var codes = new sbyte[m * k];
        var scales = new float[m * (k / group)];
        IntegerGemm.QuantizeActivations(xs, m, k, bits, group, codes, scales, 1.0, options);
        Assert.That(scales, Is.EqualTo(p.Scale.reshape(-1).data<float>().ToArray()), $"{path} int{bits} g{group}: scales");
        Assert.That(codes.Select(v => (float)v).ToArray(), Is.EqualTo(q.reshape(-1).data<float>().ToArray()), $"{path} int{bits} g{group}: codes");
        var (tc, ts) = TorchIntegerGemm.QuantizeActivations(x.reshape(1, m, k), bits, group, 1.0, options);
        using (tc)
        using (ts)
        {
            Assert.That(ts.shape, Is.EqualTo(new long[] { 1, m, k / group }));
            Assert.That(ts.reshape(-1).data<float>().ToArray(), Is.EqualTo(scales));
            Assert.That(tc.reshape(-1).data<sbyte>().ToArray(), Is.EqualTo(codes));
        }
    }

    [Test]
    public void GroupSizeOfTheWholeRowIsThePerTokenQuantization([Values("avx512vnni", "avx2", "scalar", "managed")] string path)
    {
        var options = Options(path, 2);
        int m = 13, k = 96;
        var rng = new Random(3);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var (c1, s1, c2, s2) = (new sbyte[m * k], new float[m], new sbyte[m * k], new float[m]);
        IntegerGemm.QuantizeActivations(x, m, k, 4, c1, s1, 0.9, options);
        IntegerGemm.QuantizeActivations(x, m, k, 4, k, c2, s2, 0.9, options);
        Assert.That((c2, s2), Is.EqualTo((c1, s1)));
    }

    [Test]
    public void GroupedGemmMatchesTheReference([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads, [ValueSource(nameof(Configs))] string config)
    {
        var options = Options(path, threads);
        var (wBits, aBits, aGroup, wGroup) = Parse(config);
        var rng = new Random(config.GetHashCode() & 0xFFFF ^ threads);
        foreach (var (m, n, k) in Shapes)
        {
            int aGroups = k / aGroup, wGroups = wGroup > 0 ? k / wGroup : 1;
            var a = Codes(rng, (long)m * k, (1 << (aBits - 1)) - 1);
            var b = Codes(rng, (long)n * k, (1 << (wBits - 1)) - 1);
            var sa = Enumerable.Range(0, m * aGroups).Select(_ => (float)(rng.NextDouble() * 0.1 + 1e-3)).ToArray();
            var sb = Enumerable.Range(0, n * wGroups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
            var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            using var w = Pack(b, sb, n, k, wBits, wGroup, aGroup);
            var c = new float[m * n];
            IntegerGemm.Gemm(a, sa, aGroup, m, w, bias, c, options);
            var expected = new float[m * n];
            ReferenceGemm.Grouped(a, sa, aGroup, b, sb, wGroup, expected, m, n, k);
            int fine = Math.Min(aGroup, wGroup > 0 ? wGroup : k);  // the finest group: one scale pair each
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double magnitude = 0;
                    for (int g = 0; g < k / fine; g++)
                    {
                        long dot = 0;
                        for (int p = g * fine; p < (g + 1) * fine; p++) dot += a[i * k + p] * b[j * k + p];
                        magnitude += Math.Abs(dot * (double)sa[i * aGroups + g * fine / aGroup] * sb[j * wGroups + (wGroup > 0 ? g * fine / wGroup : 0)]);
                    }
                    double want = expected[i * n + j] + (double)bias[j];
                    double tolerance = 1e-5 * (magnitude + Math.Abs(bias[j])) + 1e-12;
                    if (Math.Abs(c[i * n + j] - want) > tolerance)
                        Assert.Fail($"{path} {config} M={m} N={n} K={k} threads={threads}: C[{i},{j}] = {c[i * n + j]}, expected {want} ± {tolerance}.");
                }
        }
    }

    [Test]
    public void FusedGroupedLinearEqualsQuantizeThenGemm([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads,
        [Values("W8A8 a64 w0", "W4A4 a64 w0", "W3A3 a64 w0", "W4A4 a32 w64", "W4A4 a128 w32", "W8A4 a32 w0")] string config)
    {
        var options = Options(path, threads);
        var (wBits, aBits, aGroup, wGroup) = Parse(config);
        var rng = new Random(config.GetHashCode() & 0xFFFF ^ threads);
        // a large shape first, then small ones: the reused per-thread scratch (codes, scales) shrinks back correctly
        foreach (var (m, n, k) in new[] { (300, 145, 256), (1, 1, 128), (37, 101, 384), (9, 48, 128), (129, 49, 256) })
        {
            int aGroups = k / aGroup, wGroups = wGroup > 0 ? k / wGroup : 1;
            var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            for (int j = 0; j < k; j++) x[(m / 2) * k + j] = 0; // an all-zero row
            var b = Codes(rng, (long)n * k, (1 << (wBits - 1)) - 1);
            var sb = Enumerable.Range(0, n * wGroups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
            var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            using var w = Pack(b, sb, n, k, wBits, wGroup, aGroup);
            foreach (double clip in new[] { 1.0, 0.9 })
            {
                var codes = new sbyte[m * k];
                var scales = new float[m * aGroups];
                IntegerGemm.QuantizeActivations(x, m, k, aBits, aGroup, codes, scales, clip, options);
                var expected = new float[m * n];
                IntegerGemm.Gemm(codes, scales, aGroup, m, w, bias, expected, options);
                var fused = new float[m * n];
                IntegerGemm.Linear(x, m, w, aBits, aGroup, bias, fused, clip, options);
                Assert.That(fused, Is.EqualTo(expected), $"{path} {config} M={m} N={n} K={k} threads={threads} clip={clip}");
            }
        }
    }

    [Test]
    public void FusedPrologueWorksWithGroupedActivations([ValueSource(nameof(Paths))] string path, [Values("W4A4 a64 w0", "W8A8 a32 w64")] string config)
    {
        var options = Options(path, 2);
        var (wBits, aBits, aGroup, wGroup) = Parse(config);
        using var scope = torch.NewDisposeScope();
        int samples = 2, tokens = 7, k = 128, n = 50;
        var gen = new torch.Generator(5);
        var x = torch.randn(samples, tokens, k, generator: gen) * 2;
        var shift = torch.randn(samples, k, generator: gen) * 0.1f;
        var scale = torch.randn(samples, k, generator: gen) * 0.1f;
        var rng = new Random(9);
        var b = Codes(rng, (long)n * k, (1 << (wBits - 1)) - 1);
        var sb = Enumerable.Range(0, n * (wGroup > 0 ? k / wGroup : 1)).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
        using var w = Pack(b, sb, n, k, wBits, wGroup, aGroup);
        var ops = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale };
        var fused = TorchIntegerGemm.Linear(x, w, aBits, null, 1.0, options, ops, aGroup);
        var normed = TorchIntegerGemm.LayerNormModulate(x, ops, options);
        var unfused = TorchIntegerGemm.Linear(normed, w, aBits, null, 1.0, options, null, aGroup);
        Assert.That(fused.data<float>().ToArray(), Is.EqualTo(unfused.data<float>().ToArray()), $"{path} {config}");
    }

    [Test]
    public void ThePerTokenCallIsTheGroupSizeZeroCall([Values("avx512vnni", "avx2", "scalar", "managed")] string path)
    {
        var options = Options(path, 2);
        int m = 20, n = 70, k = 136;
        var rng = new Random(1);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var b = Codes(rng, (long)n * k, 7);
        var sb = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
        using var w = PackedWeights.FromInt4(PackNibbles(b, n, k), sb, n, k);
        var (y0, y1) = (new float[m * n], new float[m * n]);
        IntegerGemm.Linear(x, m, w, 4, ReadOnlySpan<float>.Empty, y0, 1.0, options);
        IntegerGemm.Linear(x, m, w, 4, 0, ReadOnlySpan<float>.Empty, y1, 1.0, options);
        Assert.That(y1, Is.EqualTo(y0));
    }

    [Test]
    public void BadGroupsAreRefusedWithAMessage([Values("avx512vnni", "managed")] string path)
    {
        var options = Options(path, 1);
        int m = 3, n = 10, k = 128;
        var b = new sbyte[n * k];
        var x = new float[m * k];
        var y = new float[m * n];
        using var w32 = PackedWeights.FromInt8(b, new float[n * 4], n, k, 32);
        // not a multiple of the packed group
        var e = Assert.Throws<NotSupportedException>(() => IntegerGemm.Linear(x, m, w32, 4, 16, ReadOnlySpan<float>.Empty, y, 1.0, options));
        Assert.That(e!.Message, Does.Contain("activation group size 16 is not a multiple of the group the weights are packed with (32)"));
        Assert.Throws<NotSupportedException>(() => IntegerGemm.Gemm(new sbyte[m * k], new float[m * 8], 16, m, w32, ReadOnlySpan<float>.Empty, y, options));
        // does not divide K
        var r = Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Linear(x, m, w32, 4, 96, ReadOnlySpan<float>.Empty, y, 1.0, options));
        Assert.That(r!.Message, Does.Contain("does not divide K = 128"));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.QuantizeActivations(x, m, k, 4, 48, new sbyte[m * k], new float[m * 3], 1.0, options));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Linear(x, m, w32, 4, -32, ReadOnlySpan<float>.Empty, y, 1.0, options));
        // scales of the wrong length
        var s = Assert.Throws<ArgumentException>(() => IntegerGemm.Gemm(new sbyte[m * k], new float[m], 64, m, w32, ReadOnlySpan<float>.Empty, y, options));
        Assert.That(s!.Message, Does.Contain("m × K / activationGroupSize"));
        // per-channel weights packed as such: the activation group must be K itself
        using var wpc = PackedWeights.FromInt8(b, new float[n], n, k);
        Assert.Throws<NotSupportedException>(() => IntegerGemm.Linear(x, m, wpc, 4, 64, ReadOnlySpan<float>.Empty, y, 1.0, options));
        IntegerGemm.Linear(x, m, wpc, 4, 128, ReadOnlySpan<float>.Empty, y, 1.0, options);
    }

    [TestCase(0, 64, 128, 4, 64)]     // per channel: packed at the activation group
    [TestCase(128, 64, 256, 8, 64)]   // weight group a multiple: packed at the activation group
    [TestCase(32, 64, 128, 4, 32)]    // weight group smaller and dividing: kept
    [TestCase(64, 64, 128, 4, 64)]
    [TestCase(16, 0, 128, 4, 16)]     // per token: the weights' own group
    [TestCase(0, 0, 100, 8, 0)]
    public void PackingGroupsArePlanned(int weightGroup, int activationGroup, int k, int bits, int expected)
    {
        Assert.That(ActivationGrouping.TryPackingGroup(weightGroup, activationGroup, k, bits, out int group, out string? why), Is.True, why);
        Assert.That(group, Is.EqualTo(expected));
        Assert.That(ActivationGrouping.PackingGroup(weightGroup, activationGroup, k, bits), Is.EqualTo(expected));
    }

    [TestCase(48, 64, 192, 8, "is not a multiple of the weight group size 48")]
    [TestCase(96, 64, 192, 8, "weight group size 96 is not a multiple of the activation group size 64")]
    [TestCase(0, 64, 100, 4, "activation group size 64 does not divide K = 100")]
    [TestCase(0, 12, 96, 4, "which the 4-bit kernels need to be a multiple of 8")]
    [TestCase(0, -4, 96, 8, "must be 0 (per token) or positive")]
    [TestCase(12, 24, 96, 4, "weight group size 12 is not a multiple of 8")]
    public void IncompatibleGroupsAreRefusedWithTheReason(int weightGroup, int activationGroup, int k, int bits, string reason)
    {
        Assert.That(ActivationGrouping.TryPackingGroup(weightGroup, activationGroup, k, bits, out _, out string? why), Is.False);
        Assert.That(why, Does.Contain(reason));
        var e = Assert.Throws<NotSupportedException>(() => ActivationGrouping.PackingGroup(weightGroup, activationGroup, k, bits));
        Assert.That(e!.Message, Does.Contain(reason));
    }

    [Test]
    public void ScalesAreReplicatedOverTheGroupsTheyCover()
    {
        float[] perChannel = [1f, 2f];
        Assert.That(ActivationGrouping.ReplicateScales(perChannel, 2, 8, 0, 4), Is.EqualTo(new[] { 1f, 1f, 2f, 2f }));
        float[] g8 = [1f, 2f, 3f, 4f];  // 2 rows × 2 groups of 8, K = 16
        Assert.That(ActivationGrouping.ReplicateScales(g8, 2, 16, 8, 4), Is.EqualTo(new[] { 1f, 1f, 2f, 2f, 3f, 3f, 4f, 4f }));
        Assert.That(ActivationGrouping.ReplicateScales(g8, 2, 16, 8, 8), Is.EqualTo(g8));
    }
}
