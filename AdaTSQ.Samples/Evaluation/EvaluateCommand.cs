using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AdaTSQ.Data;
using AdaTSQ.IO;
using AdaTSQ.Metrics;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// Generates the same seeded samples with the full-precision DiT and with each quantized setting, and
/// reports PSNR/SSIM against full precision, FID (ResNet-18 features) against the real test set, class
/// accuracy by the shipped classifier, wall time and weight memory; writes JSON, Markdown and a PNG grid.
/// </summary>
internal static class EvaluateCommand
{
    public const string DefaultModel = "models/fashion-dit.safetensors";
    public const string DefaultClassifier = "models/fashion-classifier.safetensors";
    public const string DefaultRealStats = "models/fashion-test-resnet18-stats.safetensors";

    private sealed record Row(string Setting, double Psnr, double Ssim, double Fid, double ClassAccuracy, double Seconds, double WeightMB, double QuantizedLayerMB, double[] TrajectoryMse);

    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("evaluate");
        string modelPath = Program.Option(args, "--model") ?? DefaultModel;
        int samples = Int(args, "--samples", 100), steps = Int(args, "--steps", 50);
        double cfg = Double(args, "--cfg", 2.0);
        string sampler = Program.Option(args, "--sampler") ?? "ddim";
        string layers = Program.Option(args, "--layers") ?? "blocks.*";
        var settings = (Program.Option(args, "--methods") ?? "rtn-w8a8,rtn-w4a8").Split(',', StringSplitOptions.RemoveEmptyEntries);
        string outDir = Program.Option(args, "--out") ?? "artifacts/eval";

        using var model = DiTCheckpoint.Load(modelPath, device: device);
        using var classifier = new ImageClassifier(device: device);
        SafeTensors.LoadInto(classifier, Program.Option(args, "--classifier") ?? DefaultClassifier);
        classifier.eval();
        string statsPath = Program.Option(args, "--real-stats") ?? DefaultRealStats;
        var realStats = File.Exists(statsPath) ? FeatureStatistics.Load(statsPath) : null;
        if (realStats is null) Console.Error.WriteLine($"warning: {statsPath} not found; FID is skipped (make it with: ./run.sh fid-stats).");
        using var features = new ResNet18Features();

        var diffusion = GaussianDiffusion.Create(1000, sampler == "ddim" ? $"ddim{steps}" : steps.ToString(CultureInfo.InvariantCulture));
        var ddpm = new DiffusionSampler(diffusion);
        var labelsArray = Enumerable.Range(0, samples).Select(i => (long)(i % model.Config.NumClasses)).ToArray();
        using var labels = torch.tensor(labelsArray, device: device);
        using var noiseGenerator = new Generator((ulong)seed, device);
        using var noise = torch.randn([samples, model.Config.InChannels, model.Config.InputSize, model.Config.InputSize], generator: noiseGenerator, device: device);
        // Pixel-space models need x̂0 clipped to the data range [−1, 1] at every step (as DDPM's pixel models
        // do); the official DiT samples latents without clipping. --no-clip turns it off.
        bool clip = !args.Contains("--no-clip");
        var options = new SamplingOptions { Seed = seed + 1, CfgScale = cfg, NullClass = model.NullClass, ClipDenoised = clip };
        Console.WriteLine($"Evaluating {modelPath}: {samples} samples ({samples / model.Config.NumClasses} per class), {sampler} {steps} steps, CFG {cfg}, x̂0 clipping {(clip ? "on" : "off")}, seed {seed}; quantized layers: {layers}");

        // Each run keeps the sample after every step, so the quantized trajectories can be compared with FP step by step.
        Tensor Generate(string name, Trajectory trajectory, out double seconds)
        {
            var watch = Stopwatch.StartNew();
            var o = options with { Progress = new ConsoleProgressBar(name), OnStep = trajectory.Record };
            var x = sampler == "ddim"
                ? ddpm.SampleDdim((x, t, y) => model.call(x, t, y), noise, labels, o, ct)
                : ddpm.SampleDdpm((x, t, y) => model.call(x, t, y), noise, labels, o, ct);
            seconds = watch.Elapsed.TotalSeconds;
            return x;
        }

        long floatBytes = model.parameters().Sum(p => p.numel() * p.ElementSize);
        var rows = new List<Row>();
        var images = new List<Tensor>();
        using var fpTrajectory = new Trajectory();
        var fp = Generate("fp", fpTrajectory, out double fpSeconds);
        images.Add(fp);
        rows.Add(Measure("FP32", fp, fp, fpSeconds, floatBytes / 1e6, 0, fpTrajectory));
        foreach (var setting in settings)
        {
            var (weights, activations) = ParseSetting(setting);
            var result = new QuantizationBuilder().ForModel(model).Layers(layers).Weights(weights).Activations(activations)
                .Quantizer(new RtnQuantizer()).WithLogger(log).Build().Apply(ct);
            using var trajectory = new Trajectory();
            var q = Generate(setting, trajectory, out double seconds);
            images.Add(q);
            double quantizedModelMB = (floatBytes - result.FloatWeightBytes + result.QuantizedWeightBytes) / 1e6;
            rows.Add(Measure(setting.ToUpperInvariant(), q, fp, seconds, quantizedModelMB, result.QuantizedWeightBytes / 1e6, trajectory));
            result.Restore();
        }

        Row Measure(string name, Tensor x, Tensor reference, double seconds, double weightMB, double quantizedMB, Trajectory trajectory)
        {
            var perStep = ImageMetrics.TrajectoryMse(fpTrajectory.Steps.Select(s => s.Next).ToList(), trajectory.Steps.Select(s => s.Next).ToList());
            double fid = double.NaN;
            if (realStats is not null)
                fid = FrechetDistance.Compute(features.Statistics(x, name), realStats);
            var (acc, _) = ClassFidelity.Accuracy(classifier, x, labelsArray, model.Config.NumClasses);
            return new Row(name, ImageMetrics.Psnr(x, reference), ImageMetrics.Ssim(x, reference), fid, acc, seconds, weightMB, quantizedMB, perStep);
        }

        Directory.CreateDirectory(outDir);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"| setting | PSNR vs FP (dB) | SSIM vs FP | trajectory MSE vs FP (mean / max over steps) | FID (ResNet-18 features) | class accuracy | sampling time (s) | model weights (MB) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Setting} | {(double.IsInfinity(r.Psnr) ? "∞" : r.Psnr.ToString("F2", CultureInfo.InvariantCulture))} | {r.Ssim:F4} | {r.TrajectoryMse.Average():E2} / {r.TrajectoryMse.Max():E2} | {r.Fid:F2} | {r.ClassAccuracy:P1} | {r.Seconds:F1} | {r.WeightMB:F2} |");
        Console.WriteLine();
        Console.Write(md);
        File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
        File.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new
        {
            model = modelPath, samples, sampler, steps, cfg, seed, layers, real_stats = realStats?.Source, real_stats_count = realStats?.Count,
            rows = rows.Select(r => new { r.Setting, psnr = double.IsInfinity(r.Psnr) ? (double?)null : r.Psnr, r.Ssim, fid = double.IsNaN(r.Fid) ? (double?)null : r.Fid, r.ClassAccuracy, r.Seconds, r.WeightMB, trajectory_mse_per_step = r.TrajectoryMse }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        ImageGrid.Save(Path.Combine(outDir, "samples.png"), images, columns: Math.Min(samples, 20));
        Console.WriteLine($"Wrote {outDir}/results.md, results.json and samples.png (rows: {string.Join(", ", rows.Select(r => r.Setting))}).");
        foreach (var t in images.Skip(1)) t.Dispose();
        fp.Dispose();
        return 0;
    }

    /// <summary>"rtn-w4a8", "rtn-w4a16-g32" → weight and activation specs.</summary>
    internal static (QuantSpec Weights, QuantSpec Activations) ParseSetting(string setting)
    {
        var parts = setting.ToLowerInvariant().Split('-');
        if (parts.Length < 2 || parts[0] != "rtn" || !parts[1].StartsWith('w') || !parts[1].Contains('a'))
            throw new ArgumentException($"setting '{setting}' is not of the form rtn-w<bits>a<bits>[-g<group>], e.g. rtn-w4a8 (other methods come with their issues).");
        int a = parts[1].IndexOf('a');
        int w = int.Parse(parts[1][1..a], CultureInfo.InvariantCulture), act = int.Parse(parts[1][(a + 1)..], CultureInfo.InvariantCulture);
        int group = parts.Length > 2 && parts[2].StartsWith('g') ? int.Parse(parts[2][1..], CultureInfo.InvariantCulture) : 0;
        return (QuantSpec.Weight(w, group), QuantSpec.Activation(act));
    }

    private static int Int(string[] args, string name, int fallback) => Program.Option(args, name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
    private static double Double(string[] args, string name, double fallback) => Program.Option(args, name) is { } v ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
