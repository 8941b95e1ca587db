using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AdaTSQ.Calibration;
using AdaTSQ.Data;
using AdaTSQ.IO;
using AdaTSQ.Metrics;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.SvdQuant;
using AdaTSQ.Methods.QuaRot;

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

    /// <summary>The same setting run on the integer kernels instead of fake quantization.</summary>
    private sealed record IntegerRow(string Setting, double PsnrVsFakeQuant, double MaxAbsVsFakeQuant, double FakeSeconds, double IntegerSeconds, long IntegerCalls, long FallbackCalls, double PackedMB);

    private sealed record Row(string Setting, double Psnr, double PsnrCi95, double Ssim, double Fid, double ClassAccuracy, double Seconds, double WeightMB, double QuantizedLayerMB, double[] TrajectoryMse, double CalibrationSeconds);

    /// <summary>One evaluated setting: method (rtn, gptq, gptqf = GPTQ + Fisher-weighted calibration), specs, smoothing.</summary>
    internal sealed record Setting(string Name, string Method, QuantSpec Weights, QuantSpec Activations, double? SmoothAlpha, double? FisherTemperature = null, int RangeGroups = 0, FisherUse? FisherUse = null, FisherLossSpace FisherSpace = FisherLossSpace.Noise, int? SvdRank = null, bool Rotate = false, int RotationBlock = 0);

    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("evaluate");
        string modelPath = Program.Option(args, "--model") ?? DefaultModel;
        int samples = Program.IntOption(args, "--samples", 100), steps = Program.IntOption(args, "--steps", 50);
        double cfg = Program.DoubleOption(args, "--cfg", 2.0);
        string sampler = Program.Option(args, "--sampler") ?? "ddim";
        string layers = Program.Option(args, "--layers") ?? "blocks.*";
        var settings = (Program.Option(args, "--methods") ?? "rtn-w8a8,rtn-w4a8,gptq-w4a8,gptqf-w4a8").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(ParseSetting).ToList();
        int calibSamples = Program.IntOption(args, "--calib-samples", 32), calibBatch = Program.IntOption(args, "--calib-batch", 16);
        int fisherSamples = Program.IntOption(args, "--fisher-samples", 16);
        string fisherData = Program.Option(args, "--fisher-data") ?? "real";
        if (fisherData is not ("real" or "generated")) throw new ArgumentException($"--fisher-data {fisherData}: expected real or generated.");
        var weighting = new FisherWeighting
        {
            Temperature = Program.DoubleOption(args, "--fisher-temperature", 1.0),
            Floor = Program.DoubleOption(args, "--fisher-floor", 0.1),
            PerLayer = !args.Contains("--fisher-shared"),
        };
        var fisherUse = Enum.Parse<FisherUse>(Program.Option(args, "--fisher-use") ?? "weight", ignoreCase: true);
        double fisherFraction = Program.DoubleOption(args, "--fisher-fraction", 0.25);
        string outDir = Program.Option(args, "--out") ?? "artifacts/eval";
        bool integer = !args.Contains("--no-integer");
        // --integer-only: a setting the integer kernels run is sampled on them only (they equal fake quantization up to
        // float rounding, and are several times faster), so more samples fit in the same time.
        bool integerOnly = args.Contains("--integer-only");
        if (integerOnly && !integer) throw new ArgumentException("--integer-only and --no-integer exclude each other.");

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
        var integerRows = new List<IntegerRow>();
        var images = new List<Tensor>();
        using var fpTrajectory = new Trajectory();
        var fp = Generate("fp", fpTrajectory, out double fpSeconds);
        images.Add(fp);
        rows.Add(Measure("FP32", fp, fp, fpSeconds, floatBytes / 1e6, 0, fpTrajectory));
        var fishers = new Dictionary<FisherLossSpace, (TemporalFisher Fisher, double Seconds)>();
        (Tensor X0, Tensor Y)? fisherX0 = null;     // the Fisher's x0, made once and shared by the loss spaces
        foreach (var setting in settings)
        {
            var builder = new QuantizationBuilder().ForModel(model).Layers(layers).Weights(setting.Weights).Activations(setting.Activations).WithLogger(log);
            if (setting.SmoothAlpha is { } alpha) builder.SmoothActivations(alpha);
            if (setting.SvdRank is { } rank) builder.UseSvdQuant(new SvdQuantOptions { Rank = rank, Seed = seed });
            if (setting.Rotate)
                builder.RotateInputs(setting.RotationBlock > 0
                    ? new QuaRotOptions { Seed = checked((int)seed), Construction = HadamardConstruction.BlockDiagonal, BlockSize = setting.RotationBlock }
                    : new QuaRotOptions { Seed = checked((int)seed) });
            if (setting.RangeGroups > 1) builder.StaticRangesPerTimestepGroup(setting.RangeGroups);
            if (setting.Method != "rtn" || setting.SmoothAlpha is not null || setting.SvdRank is not null || setting.Rotate || !setting.Activations.Dynamic)
            {
                // Calibration runs the FP sampler on its own seeds (never the evaluation's noise).
                builder.CalibrationData(TrajectoryCalibrationSource.ForDiT(model, ddpm, sampler == "ddim", new TrajectoryCalibrationOptions
                {
                    Samples = calibSamples, BatchSize = calibBatch, Seed = seed + 1000, Sampling = options with { Seed = seed + 2000 },
                })).WithProgress(new ConsoleProgressBar($"calibrate {setting.Name}"));
            }
            double extraSeconds = 0;
            if (setting.Method == "gptqf")
            {
                if (!fishers.TryGetValue(setting.FisherSpace, out var entry))
                {
                    var watch = Stopwatch.StartNew();
                    fisherX0 ??= FisherData(model, fisherData, ddpm, options, seed, device, ct);
                    var estimate = EstimateFisher(model, diffusion, layers, fisherX0.Value.X0, fisherX0.Value.Y, fisherSamples, setting.FisherSpace, seed, log, ct);
                    fishers[setting.FisherSpace] = entry = (estimate, watch.Elapsed.TotalSeconds);
                }
                var fisher = entry.Fisher;
                extraSeconds = entry.Seconds;
                builder.UseFisherCalibration(fisher, new FisherCalibrationOptions { Weighting = setting.FisherTemperature is { } tau ? weighting with { Temperature = tau } : weighting, Use = setting.FisherUse ?? fisherUse, StepFraction = fisherFraction, Seed = seed });
            }
            if (setting.Method is "gptq" or "gptqf") builder.UseHessianOptimization();
            var result = builder.Build().Apply(ct);
            double quantizedModelMB = (floatBytes - result.FloatWeightBytes + result.QuantizedWeightBytes) / 1e6;
            string? why = IntegerLinearKernel.WhyNotSupported(new LayerQuantConfig(setting.Weights, setting.Activations));
            bool runsOnKernels = integer && why is null && device.type == DeviceType.CPU;
            Tensor? q = null;
            double seconds = double.NaN;
            if (!(integerOnly && runsOnKernels))
            {
                using var trajectory = new Trajectory();
                q = Generate(setting.Name, trajectory, out seconds);
                images.Add(q);
                rows.Add(Measure(setting.Name, q, fp, seconds, quantizedModelMB, result.QuantizedWeightBytes / 1e6, trajectory, result.Elapsed.TotalSeconds + extraSeconds));
            }
            // The same quantized model on the integer kernels (CPU; W8A8 / W4A8 / W4A4, dynamic per-token or per-group
            // activations): the same noise, so it should give the fake-quant samples up to float rounding, faster.
            if (runsOnKernels)
            {
                using var kernel = new IntegerLinearKernel();
                IntegerLinearKernel.Attach(model, kernel);
                using var intTrajectory = new Trajectory();
                var qi = Generate(setting.Name + " int", intTrajectory, out double intSeconds);
                IntegerLinearKernel.Attach(model, null);
                images.Add(qi);
                rows.Add(Measure(setting.Name + " (integer kernels)", qi, fp, intSeconds, quantizedModelMB, result.QuantizedWeightBytes / 1e6, intTrajectory,
                    q is null ? result.Elapsed.TotalSeconds + extraSeconds : 0));
                if (q is not null)
                {
                    using var diff = (qi - q).abs().max();
                    integerRows.Add(new IntegerRow(setting.Name, ImageMetrics.Psnr(qi, q), diff.item<float>(), seconds, intSeconds, kernel.IntegerCalls, kernel.FallbackCalls, kernel.PackedWeightBytes / 1e6));
                }
            }
            else if (integer) log.LogInformation("{Setting}: not run on the integer kernels ({Why})", setting.Name, why ?? $"device {device}");
            result.Restore();
        }

        Row Measure(string name, Tensor x, Tensor reference, double seconds, double weightMB, double quantizedMB, Trajectory trajectory, double calibrationSeconds = 0)
        {
            var perStep = ImageMetrics.TrajectoryMse(fpTrajectory.Steps.Select(s => s.Next).ToList(), trajectory.Steps.Select(s => s.Next).ToList());
            double fid = double.NaN;
            if (realStats is not null)
                fid = FrechetDistance.Compute(features.Statistics(x, name), realStats);
            var (acc, _) = ClassFidelity.Accuracy(classifier, x, labelsArray, model.Config.NumClasses);
            var psnr = ImageMetrics.PsnrPerImage(x, reference);
            return new Row(name, psnr.Average(), ImageMetrics.MeanConfidence95(psnr), ImageMetrics.Ssim(x, reference), fid, acc, seconds, weightMB, quantizedMB, perStep, calibrationSeconds);
        }

        Directory.CreateDirectory(outDir);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"{samples} samples per row ({samples / model.Config.NumClasses} per class), {sampler} {steps} steps, CFG {cfg}, seed {seed}; quantized layers: {layers}.");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"| setting | PSNR vs FP (dB, mean ± 95 % CI over images) | SSIM vs FP | trajectory MSE vs FP (mean / max over steps) | FID (ResNet-18 features) | class accuracy | sampling time (s) | calibration + quantization time (s) | model weights (MB) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Setting} | {(double.IsInfinity(r.Psnr) ? "∞" : r.Psnr.ToString("F2", CultureInfo.InvariantCulture) + (double.IsNaN(r.PsnrCi95) ? "" : " ± " + r.PsnrCi95.ToString("F2", CultureInfo.InvariantCulture)))} | {r.Ssim:F4} | {r.TrajectoryMse.Average():E2} / {r.TrajectoryMse.Max():E2} | {r.Fid:F2} | {r.ClassAccuracy:P1} | {r.Seconds:F1} | {r.CalibrationSeconds:F1} | {r.WeightMB:F2} |");
        if (integerRows.Count > 0)
        {
            md.AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture, $"Integer kernels vs fake quantization (same quantized model, same noise; FP32 sampling took {fpSeconds:F1} s):");
            md.AppendLine();
            md.AppendLine("| setting | PSNR integer vs fake-quant (dB) | max \\|integer − fake-quant\\| | sampling time fake-quant (s) | sampling time integer (s) | integer vs fake-quant | integer vs FP32 | integer calls (fallbacks) | packed weights (MB) |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in integerRows)
                md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Setting} | {(double.IsInfinity(r.PsnrVsFakeQuant) ? "∞" : r.PsnrVsFakeQuant.ToString("F2", CultureInfo.InvariantCulture))} | {r.MaxAbsVsFakeQuant:G3} | {r.FakeSeconds:F1} | {r.IntegerSeconds:F1} | {r.FakeSeconds / r.IntegerSeconds:F2}× | {fpSeconds / r.IntegerSeconds:F2}× | {r.IntegerCalls} ({r.FallbackCalls}) | {r.PackedMB:F2} |");
        }
        Console.WriteLine();
        Console.Write(md);
        File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
        File.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new
        {
            model = modelPath, samples, sampler, steps, cfg, seed, layers, real_stats = realStats?.Source, real_stats_count = realStats?.Count,
            calib_samples = calibSamples, fisher_samples_per_step = fisherSamples, fisher_data = fisherData, fisher_weighting = weighting, fisher_use = fisherUse.ToString(),
            integer_kernels = integerRows.Select(r => new { r.Setting, psnr_vs_fake_quant = double.IsInfinity(r.PsnrVsFakeQuant) ? (double?)null : r.PsnrVsFakeQuant, max_abs_vs_fake_quant = r.MaxAbsVsFakeQuant, fake_quant_seconds = r.FakeSeconds, integer_seconds = r.IntegerSeconds, integer_calls = r.IntegerCalls, fallback_calls = r.FallbackCalls, packed_weights_mb = r.PackedMB }),
            rows = rows.Select(r => new { r.Setting, calibration_seconds = r.CalibrationSeconds, psnr = double.IsInfinity(r.Psnr) ? (double?)null : r.Psnr, psnr_ci95 = double.IsNaN(r.PsnrCi95) ? (double?)null : r.PsnrCi95, r.Ssim, fid = double.IsNaN(r.Fid) ? (double?)null : r.Fid, r.ClassAccuracy, r.Seconds, r.WeightMB, trajectory_mse_per_step = r.TrajectoryMse }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        ImageGrid.Save(Path.Combine(outDir, "samples.png"), images, columns: Math.Min(samples, 20));
        foreach (var (space, (fisher, fisherSeconds)) in fishers)
        {
            string suffix = space == FisherLossSpace.Noise ? "" : "-x0";
            File.WriteAllText(Path.Combine(outDir, $"fisher{suffix}.json"), fisher.ToJson());
            FisherPlot.Save(Path.Combine(outDir, $"fisher-alpha{suffix}.png"), fisher, weighting,
                settings.Where(x => x.FisherTemperature is not null && x.FisherSpace == space).Select(x => x.FisherTemperature!.Value), space.ToString());
            Console.WriteLine($"Wrote {outDir}/fisher{suffix}.json and fisher-alpha{suffix}.png (temporal Fisher, {space} loss: {fisherSeconds:F1} s).");
        }
        Console.WriteLine($"Wrote {outDir}/results.md, results.json and samples.png (rows: {string.Join(", ", rows.Select(r => r.Setting))}).");
        foreach (var t in images.Skip(1)) t.Dispose();
        fisherX0?.X0.Dispose();
        fisherX0?.Y.Dispose();
        fp.Dispose();
        return 0;
    }

    /// <summary>
    /// "rtn-w4a8", "gptq-w4a8-g32", "gptqf-w4a4-sq" → method, weight and activation specs, smoothing
    /// (-sq = SmoothQuant α 0.5, -sq0.7 = α 0.7).
    /// </summary>
    internal static Setting ParseSetting(string setting)
    {
        var parts = setting.ToLowerInvariant().Split('-');
        string[] methods = ["rtn", "gptq", "gptqf"];
        if (parts.Length < 2 || !methods.Contains(parts[0]) || !parts[1].StartsWith('w') || !parts[1].Contains('a'))
            throw new ArgumentException($"setting '{setting}' is not of the form <method>-w<bits>a<bits>[-g<group>][-ag<group>][-sq[<alpha>]][-svd[<rank>]][-rot|-rotb<block>][-static[<groups>]][-t<tau>][-is][-x0] with method rtn, gptq or gptqf (GPTQ + Fisher calibration), e.g. gptq-w4a8 (./run.sh --help).");
        int a = parts[1].IndexOf('a');
        int w = int.Parse(parts[1][1..a], CultureInfo.InvariantCulture), act = int.Parse(parts[1][(a + 1)..], CultureInfo.InvariantCulture);
        int group = 0, rangeGroups = 0, activationGroup = 0;
        int? svdRank = null;
        bool rotate = false;
        int rotationBlock = 0;
        double? smooth = null, temperature = null;
        bool dynamic = true;
        FisherUse? use = null;
        FisherLossSpace space = FisherLossSpace.Noise;
        foreach (var extra in parts.Skip(2))
        {
            if (extra.StartsWith("static", StringComparison.Ordinal))
            {
                dynamic = false;
                rangeGroups = extra.Length > 6 ? int.Parse(extra[6..], CultureInfo.InvariantCulture) : 0;
            }
            else if (extra.StartsWith("svd", StringComparison.Ordinal)) svdRank = extra.Length > 3 ? int.Parse(extra[3..], CultureInfo.InvariantCulture) : 32;
            else if (extra == "rot") rotate = true;
            else if (extra.StartsWith("rotb", StringComparison.Ordinal)) (rotate, rotationBlock) = (true, int.Parse(extra[4..], CultureInfo.InvariantCulture));
            else if (extra.StartsWith("ag", StringComparison.Ordinal)) activationGroup = int.Parse(extra[2..], CultureInfo.InvariantCulture);
            else if (extra.StartsWith('g')) group = int.Parse(extra[1..], CultureInfo.InvariantCulture);
            else if (extra.StartsWith("sq", StringComparison.Ordinal)) smooth = extra.Length > 2 ? double.Parse(extra[2..], CultureInfo.InvariantCulture) : 0.5;
            else if (extra == "is" && parts[0] == "gptqf") use = FisherUse.Sample;
            else if (extra == "x0" && parts[0] == "gptqf") space = FisherLossSpace.CleanImage;
            else if (extra.StartsWith('t') && parts[0] == "gptqf") temperature = double.Parse(extra[1..], CultureInfo.InvariantCulture);
            else throw new ArgumentException($"setting '{setting}': unknown part '{extra}' (expected g<group>, ag<group>, sq[<alpha>], svd[<rank>], rot, rotb<block>, static[<timestep groups>], or t<temperature> / is (importance sampling) / x0 (clean-image loss) for gptqf).");
        }
        var activations = QuantSpec.Activation(act, dynamic);
        if (activationGroup > 0 && activations.IsEnabled)
        {
            if (!dynamic) throw new ArgumentException($"setting '{setting}': per-group activations (ag{activationGroup}) are dynamic; drop -static.");
            activations = activations with { Granularity = QuantGranularity.PerGroup, GroupSize = activationGroup };
        }
        return new Setting(setting.ToUpperInvariant(), parts[0], QuantSpec.Weight(w, group), activations, smooth, temperature, rangeGroups, use, space, svdRank, rotate, rotationBlock);
    }

    /// <summary>The temporal Fisher of the FP model's selected layers, from real training images or from its own samples.</summary>
    internal static TemporalFisher EstimateFisher(DiT model, GaussianDiffusion diffusion, string layers, Tensor x0, Tensor y, int samplesPerStep,
        FisherLossSpace space, long seed, ILogger log, CancellationToken ct)
    {
        var selector = new LayerSelector([layers], []);
        var weights = ModelSurgery.FindLinears(model).Where(l => selector.Matches(l.Name)).Select(l => (l.Name, (Tensor)l.Layer.weight!)).ToList();
        var estimator = new TemporalFisherEstimator((x, t, l) => model.call(x, t, l), diffusion, x0, y,
            new TemporalFisherOptions { SamplesPerStep = samplesPerStep, Seed = seed + 5000, LossSpace = space }, log);
        return estimator.Estimate(weights, new ConsoleProgressBar("fisher"), ct);
    }

    /// <summary>The x0 of the Fisher estimate (made once per run): 256 real training images, or 256 samples of the FP model.</summary>
    internal static (Tensor X0, Tensor Y) FisherData(DiT model, string data, DiffusionSampler sampler, SamplingOptions options, long seed, Device device, CancellationToken ct)
    {
        const int pool = 256;
        Tensor x0, y;
        if (data == "real")
        {
            var train = ImageDataset.FashionMnist(train: true);
            var rng = new Random((int)seed + 4000);
            var indices = Enumerable.Range(0, pool).Select(_ => rng.Next(train.Count)).ToList();
            (x0, y) = train.Batch(indices, device);
        }
        else
        {
            y = torch.tensor(Enumerable.Range(0, pool).Select(i => (long)(i % model.Config.NumClasses)).ToArray(), device: device);
            using var generator = new Generator((ulong)(seed + 3000), device);
            using var noise = torch.randn([pool, model.Config.InChannels, model.Config.InputSize, model.Config.InputSize], generator: generator, device: device);
            x0 = sampler.SampleDdim((x, t, l) => model.call(x, t, l), noise, y, options with { Seed = seed + 3001, Progress = new ConsoleProgressBar("fisher data") }, ct);
        }
        return (x0, y);
    }
}
