using AdaTSQ.Kernels;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// One DiT forward, 2 threads: FP32, BF16 (whole model cast), and every linear layer on the integer
/// kernels at W8A8, W4A8 (g64) and W4A4 g64 with SVDQuant's rank-32 branch (activation quantization included). Models: the shipped
/// Fashion-MNIST DiT's configuration (random weights; batch 64 → 3,136 tokens) and a DiT-S/2-sized
/// one at 32×32 latents (batch 4 → 1,024 tokens). Non-linear parts (attention, norms) stay fp32.
/// </summary>
[Config(typeof(Short))]
public class DiTForwardBenchmarks
{
    private sealed class Short : ManualConfig
    {
        public Short() => AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5)
            .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(200))
            .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance).WithId("Short"));
    }

    private DiT _model = null!;
    private Tensor _x = null!, _t = null!, _y = null!;
    private IntegerLinearKernel? _kernel;

    /// <summary>Which model: Mnist-b64 and DiT-S/2-b4, or the comma-separated list in the environment variable ADATSQ_BENCH_MODELS (e.g. "DiT-S/2-b4", for a short run).</summary>
    [ParamsSource(nameof(Models))]
    public string Model { get; set; } = "Mnist-b64";

    /// <summary>The models of <see cref="Model"/>.</summary>
    public static IEnumerable<string> Models() =>
        Environment.GetEnvironmentVariable("ADATSQ_BENCH_MODELS") is { Length: > 0 } list ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : ["Mnist-b64", "DiT-S/2-b4"];

    /// <summary>FP32, BF16, W8A8-int, W4A8-int, W4A4-g64+LR32-int (SVDQuant: W4 g64, A4 per token × group 64, smoothing and a rank-32 branch fused).</summary>
    [Params("FP32", "BF16", "W8A8-int", "W4A8-int", "W4A4-g64+LR32-int")]
    public string Mode { get; set; } = "FP32";

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(2);
        var (config, batch) = Model == "Mnist-b64" ? (DiTConfig.Mnist, 64) : (DiTConfig.Named("DiT-S/2"), 4);
        _model = new DiT(config, seed: 1);
        _model.eval();
        using (torch.no_grad())
            foreach (var (_, p) in _model.named_parameters()) p.normal_(0, 0.05);
        _x = torch.randn(batch, config.InChannels, config.InputSize, config.InputSize);
        _t = torch.full(batch, 500f);
        _y = torch.zeros(batch, ScalarType.Int64);
        if (Mode == "BF16") { _model.to(ScalarType.BFloat16); _x = _x.to(ScalarType.BFloat16); }
        if (Mode.EndsWith("-int"))
        {
            BenchmarkModels.Quantize(_model, Mode); // layers with K not /64: per channel, per token
            _kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
            IntegerLinearKernel.Attach(_model, _kernel);
            Forward(); // packs the weights once
        }
    }

    [Benchmark]
    public float Forward()
    {
        using var noGrad = torch.no_grad();
        using var output = _model.call(_x, _t, _y);
        return output[0, 0, 0, 0].to(ScalarType.Float32).item<float>();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _kernel?.Dispose();
        _model.Dispose();
        _x.Dispose(); _t.Dispose(); _y.Dispose();
    }
}
