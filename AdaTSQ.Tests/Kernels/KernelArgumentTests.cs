using AdaTSQ.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Kernels;

/// <summary>Bad calls raise typed exceptions that name the problem, before any native call.</summary>
public class KernelArgumentTests
{
    private static PackedWeights Weights(int n = 4, int k = 8) =>
        PackedWeights.FromInt8(new sbyte[n * k], Enumerable.Repeat(1f, n).ToArray(), n, k);

    [Test]
    public void MismatchedLengthsAreRefused()
    {
        using var w = Weights();
        var e = Assert.Throws<ArgumentException>(() => IntegerGemm.Gemm(new sbyte[15], new float[2], 2, w, [], new float[8]))!;
        Assert.That(e.Message, Does.Contain("a: expected m × K = 2 × 8 = 16"));
        e = Assert.Throws<ArgumentException>(() => IntegerGemm.Gemm(new sbyte[16], new float[2], 2, w, new float[3], new float[8]))!;
        Assert.That(e.ParamName, Is.EqualTo("bias"));
        e = Assert.Throws<ArgumentException>(() => IntegerGemm.Gemm(new sbyte[16], new float[1], 2, w, [], new float[8]))!;
        Assert.That(e.ParamName, Is.EqualTo("activationScales"));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Gemm([], [], 0, w, [], []));
    }

    [Test]
    public void FusedLinearChecksItsArguments([Values("avx512vnni", "managed")] string path)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        var options = new KernelOptions { Isa = isa };
        using var w = Weights();
        var e = Assert.Throws<ArgumentException>(() => IntegerGemm.Linear(new float[15], 2, w, 8, [], new float[8], 1.0, options))!;
        Assert.That(e.Message, Does.Contain("a: expected m × K = 2 × 8 = 16"));
        Assert.That(Assert.Throws<ArgumentException>(() => IntegerGemm.Linear(new float[16], 2, w, 8, [], new float[7], 1.0, options))!.ParamName, Is.EqualTo("c"));
        Assert.That(Assert.Throws<ArgumentException>(() => IntegerGemm.Linear(new float[16], 2, w, 8, new float[3], new float[8], 1.0, options))!.ParamName, Is.EqualTo("bias"));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Linear(new float[16], 2, w, 9, [], new float[8], 1.0, options));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Linear(new float[16], 2, w, 8, [], new float[8], 0.0, options));
        Assert.Throws<ArgumentOutOfRangeException>(() => IntegerGemm.Linear([], 0, w, 8, [], [], 1.0, options));
    }

    [Test]
    public void WeightsOffTheRestrictedGridOrWithUnsupportedGroupsAreRefused()
    {
        var codes = new sbyte[8];
        codes[3] = -128;
        Assert.That(Assert.Throws<ArgumentException>(() => PackedWeights.FromInt8(codes, [1f], 1, 8))!.Message, Does.Contain("[0, 3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => PackedWeights.FromInt4([0x80, 0, 0, 0], [1f], 1, 8))!.Message, Does.Contain("−8"));
        Assert.That(Assert.Throws<NotSupportedException>(() => PackedWeights.FromInt8(new sbyte[12], [1f, 1f], 1, 12, groupSize: 6))!.Message, Does.Contain("multiple of 4"));
        Assert.Throws<NotSupportedException>(() => PackedWeights.FromInt4(new byte[6], [1f, 1f, 1f], 1, 12, groupSize: 4));
        Assert.Throws<ArgumentException>(() => PackedWeights.FromInt8(new sbyte[8], [1f, 1f], 1, 8));
    }

    [Test]
    public void Int32RefusesGroupedWeights()
    {
        using var w = PackedWeights.FromInt8(new sbyte[16], [1f, 1f], 1, 16, groupSize: 8);
        Assert.Throws<NotSupportedException>(() => IntegerGemm.Int32(new sbyte[16], 1, w, new int[1]));
    }

    [Test]
    public void UnavailableOrUnknownIsasAreRefused()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => NativeKernels.ParseIsa("sse9"))!.Message, Does.Contain("sse9"));
        var missing = new[] { KernelIsa.AvxVnni, KernelIsa.Avx512Vnni, KernelIsa.Avx2 }.FirstOrDefault(i => !NativeKernels.IsSupported(i));
        if (missing == KernelIsa.Auto) Assert.Ignore("every native ISA is supported here: no unavailable path to request.");
        using var w = Weights();
        var e = Assert.Throws<KernelIsaUnavailableException>(() => IntegerGemm.Gemm(new sbyte[8], new float[1], 1, w, [], new float[4], new KernelOptions { Isa = missing }))!;
        Assert.That(e.Isa, Is.EqualTo(missing));
        Assert.That(e.Message, Does.Contain(missing.ToString()));
    }

    [Test]
    public void TensorApiChecksDeviceDtypeContiguityAndShape()
    {
        using var w = Weights();
        using var f64 = torch.zeros(2, 8, ScalarType.Float64);
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(f64, w, 8))!.Message, Does.Contain("Float64"));
        using var wide = torch.zeros(8, 2);
        using var transposed = wide.t();
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(transposed, w, 8))!.Message, Does.Contain("contiguous"));
        using var wrongK = torch.zeros(2, 7);
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(wrongK, w, 8))!.Message, Does.Contain("K = 8"));
        using var x = torch.zeros(2, 8);
        using var bias = torch.zeros(5);
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(x, w, 8, bias))!.ParamName, Is.EqualTo("bias"));
    }

    [Test]
    public void TensorLinearEqualsTheDequantizedMatmul()
    {
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(11);
        var x = torch.randn([3, 5, 40], generator: gen);
        var codes = torch.randint(-127, 128, [24, 40], generator: gen).to(ScalarType.Int8);
        var scales = torch.rand([24, 1, 1], generator: gen) * 0.01f + 1e-4f;
        var bias = torch.randn([24], generator: gen);
        using var w = TorchIntegerGemm.PackWeights(codes, scales, k: 40, bits: 8);
        var y = TorchIntegerGemm.Linear(x, w, 8, bias);
        Assert.That(y.shape, Is.EqualTo(new long[] { 3, 5, 24 }));
        var (q, s) = TorchIntegerGemm.QuantizeActivations(x, 8);
        var expected = torch.nn.functional.linear(q.to(ScalarType.Float32) * s.unsqueeze(-1), codes.to(ScalarType.Float32) * scales.reshape(24, 1), bias);
        Assert.That((y - expected).abs().max().item<float>(), Is.LessThan(1e-4f));
    }
}
