using AdaTSQ.Kernels;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// The cost of SVDQuant's low-rank branch on the integer kernels (issue 13), at M = 1024, K = 1152, N = 4608, 2 threads:
/// W4A4 g64 with per-group activations (a_group 64) alone, with the input scale and a rank-16 / rank-32 branch fused into
/// the call (ABI 5), and with the rank-32 branch run unfused (two torch matmuls and an add after the integer call, the
/// path before ABI 5), and with QuaRot's rotation (H_36 ⊗ H_32) fused into the prologue or run in TorchSharp before the call;
/// beside fp32 / bf16 matmul, W8A8, W4A8 g64. The "tensor" cases go through TorchIntegerGemm.Linear
/// (which allocates its output tensor, as QuantLinear's calls do); the span cases write into a preallocated array.
/// </summary>
[Config(typeof(KernelBenchmarkConfig))]
public class LowRankGemmBenchmarks
{
    private Tensor _x = null!, _w = null!, _xb = null!, _wb = null!, _inv = null!, _down16 = null!, _up16 = null!, _down32 = null!, _up32 = null!;
    private PackedWeights _w8 = null!, _w4 = null!;
    private float[] _xs = null!, _out = null!;
    private LinearTransforms _lr16 = null!, _lr32 = null!, _scaleOnly = null!, _rot = null!;
    private AdaTSQ.Methods.QuaRot.HadamardRotation _hadamard = null!;
    private static readonly KernelOptions Native = new() { Isa = KernelIsa.Auto, Threads = 2 };

    /// <summary>Tokens (fixed: the shape).</summary>
    [Params(1024)]
    public int M { get; set; }

    /// <summary>K×N (fixed).</summary>
    [Params("1152x4608")]
    public string Shape { get; set; } = "1152x4608";

    private int K => int.Parse(Shape.Split('x')[0]);
    private int N => int.Parse(Shape.Split('x')[1]);

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(2);
        _ = GopsColumn.PeakGops;
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
        _out = new float[M * N];
        _inv = torch.rand(K) + 0.5;
        _down16 = torch.randn(16, K) * 0.01; _up16 = torch.randn(N, 16) * 0.01;
        _down32 = torch.randn(32, K) * 0.01; _up32 = torch.randn(N, 32) * 0.01;
        _scaleOnly = new LinearTransforms { InputScale = _inv };
        _lr16 = new LinearTransforms { InputScale = _inv, LowRankDown = _down16, LowRankUp = _up16 };
        _lr32 = new LinearTransforms { InputScale = _inv, LowRankDown = _down32, LowRankUp = _up32 };
        _hadamard = AdaTSQ.Methods.QuaRot.HadamardRotation.Create(K, seed: 0); // 1152 = H_36 (Paley II) ⊗ H_32
        _rot = new LinearTransforms { Rotation = _hadamard.ToFusedRotation() };
    }

    [Benchmark(Baseline = true, Description = "TorchSharp fp32 matmul")]
    public void Fp32() { using var y = torch.matmul(_x, _w.t()); }

    [Benchmark(Description = "TorchSharp bf16 matmul")]
    public void Bf16() { using var y = torch.matmul(_xb, _wb.t()); }

    [Benchmark(Description = "W8A8 span")]
    public void W8A8() => IntegerGemm.Linear(_xs, M, _w8, 8, [], _out, 1.0, Native);

    [Benchmark(Description = "W4A8 g64 span")]
    public void W4A8() => IntegerGemm.Linear(_xs, M, _w4, 8, [], _out, 1.0, Native);

    [Benchmark(Description = "W4A4 g64 a64 span")]
    public void W4A4Groups() => IntegerGemm.Linear(_xs, M, _w4, 4, 64, [], _out, 1.0, Native);

    [Benchmark(Description = "W4A8 g64 tensor")]
    public void W4A8Tensor() { using var y = TorchIntegerGemm.Linear(_x, _w4, 8, null, 1.0, Native); }

    [Benchmark(Description = "W4A4 g64 a64 tensor")]
    public void W4A4Tensor() { using var y = TorchIntegerGemm.Linear(_x, _w4, 4, null, 1.0, Native, null, 64); }

    [Benchmark(Description = "W4A4 g64 a64 + 1/s tensor")]
    public void W4A4Scale() { using var y = TorchIntegerGemm.Linear(_x, _w4, 4, null, 1.0, Native, null, 64, _scaleOnly); }

    [Benchmark(Description = "W4A4 g64 a64 + 1/s + LR16 fused")]
    public void W4A4Lr16() { using var y = TorchIntegerGemm.Linear(_x, _w4, 4, null, 1.0, Native, null, 64, _lr16); }

    [Benchmark(Description = "W4A4 g64 a64 + 1/s + LR32 fused")]
    public void W4A4Lr32() { using var y = TorchIntegerGemm.Linear(_x, _w4, 4, null, 1.0, Native, null, 64, _lr32); }

    [Benchmark(Description = "W4A4 g64 a64 + 1/s + LR32 unfused")]
    public void W4A4Lr32Unfused()
    {
        using var scope = torch.NewDisposeScope();
        var xt = _x * _inv;
        var y = TorchIntegerGemm.Linear(xt, _w4, 4, null, 1.0, Native, null, 64);
        y.add_(xt.matmul(_down32.t()).matmul(_up32.t()));
    }

    [Benchmark(Description = "W4A4 g64 a64 + QuaRot 36x32 fused")]
    public void W4A4Rotation() { using var y = TorchIntegerGemm.Linear(_x, _w4, 4, null, 1.0, Native, null, 64, _rot); }

    [Benchmark(Description = "W4A4 g64 a64 + QuaRot 36x32 unfused")]
    public void W4A4RotationUnfused()
    {
        using var xr = _hadamard.Rotate(_x);
        using var y = TorchIntegerGemm.Linear(xr, _w4, 4, null, 1.0, Native, null, 64);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose(); _w.Dispose(); _xb.Dispose(); _wb.Dispose(); _inv.Dispose();
        _down16.Dispose(); _up16.Dispose(); _down32.Dispose(); _up32.Dispose();
        _w8.Dispose(); _w4.Dispose(); _hadamard.Dispose();
    }
}
