using System.Runtime.InteropServices;
using AdaTSQ.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// The CUDA kernels (opt-in libadatsq_kernels_cuda). Tests that need a device are ignored, saying so,
/// when the library or a CUDA device is missing (always the case on the CPU-only build machines);
/// argument checks that refuse a call before any native call run everywhere.
/// </summary>
public class CudaIntegerGemmTests
{
    private static void RequireDevice()
    {
        if (!CudaIntegerGemm.IsAvailable) Assert.Ignore($"no CUDA device: {CudaIntegerGemm.UnavailableReason}");
        if (!torch.cuda.is_available()) Assert.Ignore("no CUDA device: libadatsq_kernels_cuda sees one, but this TorchSharp/libtorch build cannot create CUDA tensors.");
    }

    [Test]
    public void AvailabilityIsReportedWithoutThrowing()
    {
        bool available = CudaIntegerGemm.IsAvailable;
        Assert.That(CudaIntegerGemm.DeviceCount > 0, Is.EqualTo(available));
        if (available) Assert.That(CudaIntegerGemm.UnavailableReason, Is.Null);
        else Assert.That(CudaIntegerGemm.UnavailableReason, Is.Not.Null.And.Not.Empty);
    }

    [Test]
    public void CpuTensorsAreRefusedBeforeAnyNativeCall()
    {
        using var x = torch.zeros(2, 8);
        using var a = torch.zeros(new long[] { 2, 8 }, ScalarType.Int8);
        using var sa = torch.ones(2);
        using var w = torch.zeros(new long[] { 4, 8 }, ScalarType.Int8);
        using var sw = torch.ones(4);
        var e = Assert.Throws<ArgumentException>(() => CudaIntegerGemm.QuantizeActivations(x))!;
        Assert.That(e.ParamName, Is.EqualTo("x"));
        Assert.That(e.Message, Does.Contain("the CUDA kernels take CUDA tensors, got a tensor on cpu"));
        e = Assert.Throws<ArgumentException>(() => CudaIntegerGemm.Gemm(a, sa, w, sw, 8))!;
        Assert.That(e.ParamName, Is.EqualTo("activationCodes"));
        e = Assert.Throws<ArgumentException>(() => CudaIntegerGemm.Linear(x, w, sw, 8))!;
        Assert.That(e.ParamName, Is.EqualTo("x"));
    }

    [Test]
    public void BadScalarArgumentsAreRefused()
    {
        using var x = torch.zeros(2, 8);
        using var w = torch.zeros(new long[] { 4, 8 }, ScalarType.Int8);
        using var sw = torch.ones(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaIntegerGemm.QuantizeActivations(x, bits: 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaIntegerGemm.QuantizeActivations(x, clipRatio: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaIntegerGemm.Gemm(x, x, w, sw, weightBits: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaIntegerGemm.Gemm(x, x, w, sw, 8, groupSize: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaIntegerGemm.Linear(x, w, sw, 8, activationBits: 1));
        Assert.Throws<ArgumentNullException>(() => CudaIntegerGemm.Gemm(null!, x, w, sw, 8));
    }

    /// <summary>Per-token × per-group activation scales are not implemented on CUDA: refused, by name, before anything else.</summary>
    [Test]
    public void PerGroupActivationsAreRefusedAsNotImplemented()
    {
        using var x = torch.zeros(2, 64);
        using var w = torch.zeros(new long[] { 4, 64 }, ScalarType.Int8);
        using var sw = torch.ones(4);
        var e = Assert.Throws<NotSupportedException>(() => CudaIntegerGemm.QuantizeActivations(x, 4, groupSize: 32))!;
        Assert.That(e.Message, Does.Contain("per-group activation scales (group size 32) are not implemented on CUDA"));
        e = Assert.Throws<NotSupportedException>(() => CudaIntegerGemm.Linear(x, w, sw, 8, activationGroupSize: 64))!;
        Assert.That(e.Message, Does.Contain("not implemented on CUDA").And.Contain("TorchIntegerGemm"));
    }

    [Test]
    public void TensorDataPointerMatchesTorchSharp()
    {
        // The device pointer of a CUDA tensor comes from TorchSharp's public Storage.data_ptr(); on a CPU tensor the
        // same call must give the address TorchSharp's own span starts at, including a storage offset.
        using var t = torch.arange(12, ScalarType.Float32).reshape(3, 4);
        using var row = t[1];
        nint p = CudaIntegerGemm.Data(t), q = CudaIntegerGemm.Data(row);
        Assert.That((long)(q - p), Is.EqualTo(4L * sizeof(float)));
        Assert.That(BitConverter.Int32BitsToSingle(Marshal.ReadInt32(p, 3 * sizeof(float))), Is.EqualTo(3f));
        Assert.That(BitConverter.Int32BitsToSingle(Marshal.ReadInt32(q)), Is.EqualTo(4f));
    }

    [Test]
    public void QuantizeMatchesTheCpuKernel()
    {
        RequireDevice();
        using var x = torch.randn(37, 131, generator: torch.manual_seed(1));
        using var xc = x.cuda();
        var (codes, scales) = CudaIntegerGemm.QuantizeActivations(xc, 8);
        var (expectedCodes, expectedScales) = TorchIntegerGemm.QuantizeActivations(x, 8);
        using (codes) using (scales) using (expectedCodes) using (expectedScales)
        {
            using var c = codes.cpu();
            using var s = scales.cpu();
            Assert.That(TestTensors.Identical(c, expectedCodes), Is.True, "codes differ from the CPU kernel");
            Assert.That(torch.allclose(s, expectedScales, rtol: 1e-6, atol: 0), Is.True, "scales differ from the CPU kernel");
        }
    }

    [TestCase(8, 1, 8, 8, 0)]
    [TestCase(8, 37, 131, 70, 0)]
    [TestCase(8, 130, 259, 65, 64)]
    [TestCase(8, 5, 33, 3, 7)]
    [TestCase(4, 1, 8, 8, 0)]
    [TestCase(4, 37, 131, 70, 0)]
    [TestCase(4, 130, 259, 65, 64)]
    [TestCase(4, 5, 33, 3, 7)]
    public void GemmMatchesAPlainReference(int weightBits, int m, int k, int n, int groupSize)
    {
        RequireDevice();
        var rng = new Random(1000 * m + k + n + groupSize);
        int qmax = weightBits <= 4 ? 7 : 127;
        var a = new sbyte[m * k];
        for (int i = 0; i < a.Length; i++) a[i] = (sbyte)rng.Next(-127, 128);
        var wq = new int[n * k];
        for (int i = 0; i < wq.Length; i++) wq[i] = rng.Next(-qmax, qmax + 1);
        int group = groupSize == 0 || groupSize >= k ? k : groupSize, groups = (k + group - 1) / group;
        var sa = Enumerable.Range(0, m).Select(_ => (float)(rng.NextDouble() + 0.01)).ToArray();
        var sw = Enumerable.Range(0, n * groups).Select(_ => (float)(rng.NextDouble() * 0.1 + 0.001)).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();

        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int g = 0; g < groups; g++)
                {
                    long acc = 0;
                    for (int kk = g * group; kk < Math.Min(k, (g + 1) * group); kk++) acc += a[i * k + kk] * wq[j * k + kk];
                    sum += acc * (double)sw[j * groups + g];
                }
                expected[i * n + j] = sum * sa[i] + bias[j];
            }

        Tensor wCodes;
        if (weightBits <= 4)
        {
            int width = (k + 1) / 2;
            var packed = new byte[n * width];
            for (int j = 0; j < n; j++)
                for (int kk = 0; kk < k; kk++)
                    packed[j * width + kk / 2] |= (byte)((wq[j * k + kk] & 0xF) << (kk % 2 == 0 ? 0 : 4));
            wCodes = torch.tensor(packed, new long[] { n, width }).cuda();
        }
        else wCodes = torch.tensor(wq.Select(v => (sbyte)v).ToArray(), new long[] { n, k }).cuda();
        using (wCodes)
        using (var aT = torch.tensor(a, new long[] { m, k }).cuda())
        using (var saT = torch.tensor(sa).cuda())
        using (var swT = torch.tensor(sw, new long[] { n, groups }).cuda())
        using (var bT = torch.tensor(bias).cuda())
        using (var y = CudaIntegerGemm.Gemm(aT, saT, wCodes, swT, weightBits, groupSize, bT))
        using (var yc = y.cpu())
        {
            Assert.That(yc.shape, Is.EqualTo(new long[] { m, n }));
            var got = yc.data<float>().ToArray();
            for (int i = 0; i < got.Length; i++)
                Assert.That(got[i], Is.EqualTo(expected[i]).Within(1e-5 * Math.Max(1.0, Math.Abs(expected[i]))), $"element {i} (row {i / n}, column {i % n})");
        }
    }
}
