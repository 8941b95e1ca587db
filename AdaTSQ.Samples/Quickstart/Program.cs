// snippet: quickstart
using System.Diagnostics;
using AdaTSQ.Calibration;
using AdaTSQ.Metrics;
using AdaTSQ.Models.DiT;
using AdaTSQ.Pipeline;
using AdaTSQ.Sampling;
using TorchSharp;

// The Fashion-MNIST DiT shipped in models/ (found by walking up from the program's folder).
string? path = FindUp(AppContext.BaseDirectory, Path.Combine("models", "fashion-dit.safetensors"));
if (path is null)
{
    Console.Error.WriteLine($"models/fashion-dit.safetensors not found above {AppContext.BaseDirectory}: run from a clone of the repository.");
    return 1;
}
var clock = Stopwatch.StartNew();
using var dit = DiTCheckpoint.Load(path);
var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim20"));
var sampling = new SamplingOptions { CfgScale = 2.0, NullClass = dit.NullClass, ClipDenoised = true, Seed = 1 };

// Eight images (classes 0–7), the same seeded noise for full precision and quantized.
using var labels = torch.arange(8L);
using var generator = new torch.Generator(42);
using var noise = torch.randn([8, 1, 28, 28], generator: generator);
using var fp = sampler.SampleDdim((x, t, y) => dit.call(x, t, y), noise, labels, sampling);

// Calibration data: the full-precision model's own sampling trajectories, on their own seeds.
var trajectories = TrajectoryCalibrationSource.ForDiT(dit, sampler, ddim: true,
    new TrajectoryCalibrationOptions { Samples = 4, BatchSize = 4, Seed = 1000, Sampling = sampling with { Seed = 2000 } });

// GPTQ W4A8 on the transformer blocks: the model is quantized in memory (fake quantization).
var result = new QuantizationBuilder()
    .ForModel(dit).Layers("blocks.*")
    .Weights(bits: 4).Activations(bits: 8)
    .CalibrationData(trajectories)
    .UseHessianOptimization()
    .Build().Apply();
Console.Write(result.FormatTable());

using var quantized = sampler.SampleDdim((x, t, y) => dit.call(x, t, y), noise, labels, sampling);
Console.WriteLine($"W4A8 vs FP32, same noise: PSNR {ImageMetrics.Psnr(quantized, fp):F2} dB, SSIM {ImageMetrics.Ssim(quantized, fp):F4}");
Console.WriteLine($"quantized weights {result.QuantizedWeightBytes:N0} bytes (float {result.FloatWeightBytes:N0}); {clock.Elapsed.TotalSeconds:F0} s in all");
result.Restore();   // the original float layers back
return 0;

static string? FindUp(string start, string relative)
{
    for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
    return null;
}
// end snippet
