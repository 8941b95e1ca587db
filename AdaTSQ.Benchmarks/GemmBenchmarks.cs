using AdaTSQ.Kernels;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// One linear layer <c>y = x·Wᵀ</c> at DiT shapes, 2 threads: TorchSharp fp32 and bf16 matmul
/// against the integer kernels (activation quantization included in their time: fused into the
/// GEMM driver, and for W8A8 also as a separate pass) on the native AVX-512 VNNI path and the
/// managed fallback. Shape = "KxN"; 192x576, 192x768 and 768x192 are
/// the shipped Fashion-MNIST DiT's layers.
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public class GemmBenchmarks
{
    private Tensor _x = null!, _w = null!, _xb = null!, _wb = null!, _y = null!;
    private PackedWeights _w8 = null!, _w4 = null!;
    private sbyte[] _codes = null!;
    private float[] _scales = null!, _xs = null!, _out = null!;
    private static readonly KernelOptions Native = new() { Isa = KernelIsa.Auto, Threads = 2 };
    private static readonly KernelOptions Managed = new() { Isa = KernelIsa.Managed, Threads = 2 };

    /// <summary>Tokens × batch.</summary>
    [Params(256, 1024, 4096)]
    public int M { get; set; }

    /// <summary>K×N.</summary>
    [Params("1152x1152", "1152x4608", "4608x1152", "192x576", "192x768", "768x192")]
    public string Shape { get; set; } = "1152x1152";

    private int K => int.Parse(Shape.Split('x')[0]);
    private int N => int.Parse(Shape.Split('x')[1]);

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(2);
        _ = GopsColumn.PeakGops; // measured once, on the benchmark thread, before any case runs
        torch.manual_seed(0);
        _x = torch.randn(M, K);
        _w = torch.randn(N, K);
        _xb = _x.to(ScalarType.BFloat16);
        _wb = _w.to(ScalarType.BFloat16);
        var rng = new Random(1);
        var w8 = Enumerable.Range(0, N * K).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var w4 = new byte[N * ((K + 1) / 2)];
        rng.NextBytes(w4);
        for (int i = 0; i < w4.Length; i++) { if ((w4[i] & 0xF) == 8) w4[i] ^= 1; if ((w4[i] >> 4) == 8) w4[i] ^= 0x10; }
        _w8 = PackedWeights.FromInt8(w8, Enumerable.Repeat(0.01f, N).ToArray(), N, K);
        _w4 = PackedWeights.FromInt4(w4, Enumerable.Repeat(0.01f, N * (K / 64)).ToArray(), N, K, groupSize: 64);
        _xs = _x.data<float>().ToArray();
        _codes = new sbyte[M * K];
        _scales = new float[M];
        _out = new float[M * N];
        _y = torch.empty(M, N);
    }

    [Benchmark(Baseline = true, Description = "TorchSharp fp32 matmul")]
    public void Fp32() { using var y = torch.matmul(_x, _w.t()); }

    [Benchmark(Description = "TorchSharp bf16 matmul")]
    public void Bf16() { using var y = torch.matmul(_xb, _wb.t()); }

    [Benchmark(Description = "W8A8 native")]
    public void W8A8() => IntegerGemm.Linear(_xs, M, _w8, 8, [], _out, 1.0, Native);

    [Benchmark(Description = "W8A8 native, separate quant")]
    public void W8A8Unfused() => IntegerGemm.Linear(_xs, M, _w8, 8, [], _out, _codes, _scales, Native);

    [Benchmark(Description = "W4A8 g64 native")]
    public void W4A8() => IntegerGemm.Linear(_xs, M, _w4, 8, [], _out, 1.0, Native);

    [Benchmark(Description = "W4A4 g64 native")]
    public void W4A4() => IntegerGemm.Linear(_xs, M, _w4, 4, [], _out, 1.0, Native);

    [Benchmark(Description = "W8A8 managed")]
    public void W8A8Managed() => IntegerGemm.Linear(_xs, M, _w8, 8, [], _out, _codes, _scales, Managed);

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose(); _w.Dispose(); _xb.Dispose(); _wb.Dispose(); _y.Dispose();
        _w8.Dispose(); _w4.Dispose();
    }
}
