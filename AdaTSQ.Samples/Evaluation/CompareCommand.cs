using System.Diagnostics;
using System.Globalization;
using AdaTSQ.Calibration;
using AdaTSQ.Evaluation;
using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.IO;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Metrics;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// <c>compare</c>: every method of <see cref="ComparisonCatalog"/> × every bit setting on the Fashion-MNIST DiT, through
/// <see cref="ModelComparison"/> (cached cells, resumable), reported as Markdown, JSON and a PSNR-against-bits PNG
/// (<see cref="ComparisonReport"/>, <see cref="ComparisonPlot"/>). The DiT-specific parts live here: loading the model and
/// the judges, sampling a chunk, the calibration trajectories and the temporal Fisher. docs/comparison-fashion-dit.md.
/// </summary>
internal static class CompareCommand
{
    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("compare");
        string modelPath = Program.Option(args, "--model") ?? EvaluateCommand.DefaultModel;
        string classifierPath = Program.Option(args, "--classifier") ?? EvaluateCommand.DefaultClassifier;
        string statsPath = Program.Option(args, "--real-stats") ?? EvaluateCommand.DefaultRealStats;
        int samples = Program.IntOption(args, "--samples", 1000), steps = Program.IntOption(args, "--steps", 50);
        int chunkSize = Program.IntOption(args, "--batch", 100);
        int resamples = Program.IntOption(args, "--bootstrap", Bootstrap.DefaultResamples);
        double cfg = Program.DoubleOption(args, "--cfg", 2.0);
        string sampler = Program.Option(args, "--sampler") ?? "ddim";
        if (sampler is not ("ddim" or "ddpm")) throw new ArgumentException($"--sampler {sampler}: expected ddim or ddpm.");
        bool clip = !args.Contains("--no-clip");
        string layers = Program.Option(args, "--layers") ?? "blocks.*";
        var methodNames = (Program.Option(args, "--methods")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [.. ComparisonCatalog.DefaultMethods])
            .Select(m => ComparisonCatalog.Find(m).Name).ToList();
        var bits = (Program.Option(args, "--bits") ?? "W8A8,W4A8,W4A4,W3A3").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(BitSetting.Parse).ToList();
        string judged = Program.Option(args, "--judge") ?? ComparisonCatalog.DefaultJudge;
        int calibSamples = Program.IntOption(args, "--calib-samples", 32), calibBatch = Program.IntOption(args, "--calib-batch", 16);
        var (fisherSamples, fisherData, weighting, fisherUse, fisherFraction) = FisherCommandOptions.Parse(args);
        string outDir = Program.Option(args, "--out") ?? "artifacts/compare";
        string cacheDir = Program.Option(args, "--cache") ?? Path.Combine(outDir, "cache");

        using var model = DiTCheckpoint.Load(modelPath, device: device);
        using var classifier = new ImageClassifier(device: device);
        SafeTensors.LoadInto(classifier, classifierPath);
        classifier.eval();
        var realStats = File.Exists(statsPath) ? FeatureStatistics.Load(statsPath) : null;
        if (realStats is null) Console.Error.WriteLine($"warning: {statsPath} not found; FID is skipped (make it with: ./run.sh fid-stats).");
        else if (realStats.Count < 10_000)
            Console.Error.WriteLine($"warning: {statsPath} holds the statistics of {realStats.Count} real images, not all 10,000 test images (regenerate with: ./run.sh fid-stats --count 10000).");
        using var features = new ResNet18Features();

        var diffusion = GaussianDiffusion.Create(1000, sampler == "ddim" ? $"ddim{steps}" : steps.ToString(CultureInfo.InvariantCulture));
        var ddpm = new DiffusionSampler(diffusion);
        var options = new SamplingOptions { Seed = seed + 1, CfgScale = cfg, NullClass = model.NullClass, ClipDenoised = clip };
        // As evaluate samples: chunk k's step noise (DDPM only) seeded by the chunk, so the same settings give the same images.
        ChunkSampler sample = (chunk, token) =>
        {
            var o = options with { Seed = seed + 1 + 100_000L * chunk.Index };
            return sampler == "ddim"
                ? ddpm.SampleDdim((x, t, y) => model.call(x, t, y), chunk.Noise, chunk.Labels, o, token)
                : ddpm.SampleDdpm((x, t, y) => model.call(x, t, y), chunk.Noise, chunk.Labels, o, token);
        };

        string modelIdentity = CellFingerprint.OfFile(modelPath);
        var settings = methodNames.SelectMany(m => bits.Select(b => ComparisonCatalog.SettingFor(m, b))).ToList();
        var fisherSeconds = new Dictionary<FisherVariant, (TemporalFisher Fisher, double Seconds, string Source)>();
        foreach (var variant in settings.Where(s => s.Method == "gptqf").Select(s => s.Fisher).Distinct())
            fisherSeconds[variant] = LoadOrEstimateFisher(model, diffusion, ddpm, options, variant, modelIdentity, layers, fisherSamples, fisherData, sampler, steps, seed, cacheDir, device, log, ct);
        // qdit: Q-DiT's search trajectories (--qdit-samples, own seed), made once and shared by its cells.
        using var qditTrajectories = new DisposableLazy<Methods.AdaTSQ.Search.SearchTrajectories>(() =>
            Methods.AdaTSQ.Search.SearchTrajectories.ForDiT(model, ddpm.DdimSteps(options), Program.IntOption(args, "--qdit-samples", 8), seed + 7000));
        var services = new SettingServices
        {
            Layers = layers, Seed = seed, Weighting = weighting, FisherUse = fisherUse, FisherFraction = fisherFraction,
            Fisher = variant => fisherSeconds[variant].Fisher,
            QDitSearch = () => (model, qditTrajectories.Value),
            // ptq4dit: the balancing is folded into this model; each cell's Restore() reverts it (IModelChangingTransform).
            Model = model,
            Calibration = _ => TrajectoryCalibrationSource.ForDiT(model, ddpm, sampler == "ddim", new TrajectoryCalibrationOptions
            {
                Samples = calibSamples, BatchSize = calibBatch, Seed = seed + 1000, Sampling = options with { Seed = seed + 2000 },
            }),
        };
        string shared = string.Create(CultureInfo.InvariantCulture,
            $"layers {layers}; calibration {calibSamples} trajectories, batch {calibBatch}, seeds {seed + 1000}/{seed + 2000}; seed {seed}");
        string fisherShared = string.Create(CultureInfo.InvariantCulture,
            $"; Fisher {fisherSamples}/step from {fisherData} data, τ {weighting.Temperature}, floor {weighting.Floor}, per-layer {weighting.PerLayer}, use {fisherUse}, fraction {fisherFraction}");
        var methods = methodNames.Select(name =>
        {
            var entry = ComparisonCatalog.Find(name);
            bool fisher = entry.Template.StartsWith("gptqf-", StringComparison.Ordinal);
            string qdit = entry.Template.StartsWith("qdit-", StringComparison.Ordinal)
                ? string.Create(CultureInfo.InvariantCulture, $"; Q-DiT search on {Program.IntOption(args, "--qdit-samples", 8)} trajectories, seed {seed + 7000}") : "";
            return new ComparisonMethod(entry.Name, $"{entry.Template}; {shared}{(fisher ? fisherShared : "")}{qdit}",
                (builder, b) =>
                {
                    // The cleanup (PTQ4DiT's balancing, TQ-DiT's recorded calls) is disposed by the cell after Restore().
                    SettingCatalog.Configure(builder, ComparisonCatalog.SettingFor(entry.Name, b), services, out var cleanup);
                    return cleanup;
                });
        }).ToList();

        var comparisonOptions = new ComparisonOptions
        {
            Evaluation = new ChunkedEvaluationOptions
            {
                Samples = samples, ChunkSize = chunkSize, Seed = seed, Classes = model.Config.NumClasses,
                SampleShape = [model.Config.InChannels, model.Config.InputSize, model.Config.InputSize],
            },
            CacheDirectory = cacheDir, ModelIdentity = modelIdentity, BootstrapResamples = resamples,
            UseIntegerKernels = !args.Contains("--no-integer"), RetryFailed = args.Contains("--retry-failed"),
            Context = new Dictionary<string, string>
            {
                ["sampler"] = sampler, ["steps"] = steps.ToString(CultureInfo.InvariantCulture), ["cfg"] = cfg.ToString("R", CultureInfo.InvariantCulture),
                ["clip"] = clip.ToString(), ["classifier"] = CellFingerprint.OfFile(classifierPath),
                ["fid_stats"] = realStats is null ? "none" : CellFingerprint.OfFile(statsPath), ["features"] = "ResNet-18 (Microsoft.ML.DnnImageFeaturizer.ResNet18)",
            },
        };
        var scorers = new ImageScorers
        {
            Classify = x => classifier.Predict(x),
            Features = realStats is null ? null : features.ComputeRows,
            FeatureDimension = ResNet18Features.Dimension,
        };
        var comparison = new ModelComparison(model, sample, comparisonOptions, scorers, realStats, device, log)
        {
            CellProgress = key => new ConsoleProgressBar(key),
        };
        Console.WriteLine($"Comparing {string.Join(", ", methodNames)} at {string.Join(", ", bits.Select(b => b.Name))} on {modelPath}: {samples} samples per cell in chunks of {chunkSize}, {sampler} {steps} steps, CFG {cfg}, seed {seed}; cache {cacheDir}");
        var result = comparison.Run(methods, bits, new ConsoleProgressBar("compare"), ct);

        var header = new ComparisonReport.Header(modelPath, samples, chunkSize, sampler, steps, cfg, clip, seed, layers, resamples, realStats?.Count, realStats?.Source,
            cacheDir, judged, methodNames.Select(n => ComparisonCatalog.Find(n)).Select(e => (e.Name, e.Template, e.Description)).ToList(),
            fisherSeconds.Select(f => (f.Key.Space + (f.Key.Inputs == FisherInputs.Trajectory ? ", trajectory" : ""), f.Value.Seconds, f.Value.Source)).ToList());
        Directory.CreateDirectory(outDir);
        string markdown = ComparisonReport.Markdown(result, header);
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.md"), markdown, ct);
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), ComparisonReport.Json(result, header), ct);
        ComparisonPlot.Save(Path.Combine(outDir, "psnr-vs-bits.png"), result);
        Console.WriteLine();
        Console.Write(markdown);
        Console.WriteLine($"Wrote {outDir}/results.md, results.json and psnr-vs-bits.png ({result.ComputedCells} cells computed, {result.LoadedCells} loaded from {cacheDir}).");
        return 0;
    }

    /// <summary>The temporal Fisher of AdaTSQ's rows: from the cache directory when an earlier run estimated it with the same inputs, else estimated and saved.</summary>
    private static (TemporalFisher, double, string) LoadOrEstimateFisher(DiT model, GaussianDiffusion diffusion, DiffusionSampler ddpm, SamplingOptions options,
        FisherVariant variant, string modelIdentity, string layers, int samplesPerStep, string data, string sampler, int steps, long seed, string cacheDir,
        Device device, ILogger log, CancellationToken ct)
    {
        var space = variant.Space;
        bool trajectory = variant.Inputs == FisherInputs.Trajectory;
        var identity = new Dictionary<string, string>
        {
            ["model"] = modelIdentity, ["layers"] = layers, ["samples_per_step"] = samplesPerStep.ToString(CultureInfo.InvariantCulture), ["data"] = data,
            ["space"] = space.ToString(), ["sampler"] = sampler, ["steps"] = steps.ToString(CultureInfo.InvariantCulture), ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["cfg"] = options.CfgScale.ToString("R", CultureInfo.InvariantCulture), ["clip"] = options.ClipDenoised.ToString(),
        };
        // Only a trajectory estimate adds its inputs (and needs no x0 data), so the q-sample estimates keep their cache keys.
        if (trajectory)
        {
            identity["inputs"] = $"trajectory {EvaluateCommand.FisherTrajectories}";
            identity.Remove("data");
        }
        string key = CellFingerprint.Compute(identity);
        string path = Path.Combine(cacheDir, $"fisher-{space}{(trajectory ? "-Trajectory" : "")}-{key[..16]}.json");
        if (File.Exists(path)) return (TemporalFisher.FromJson(File.ReadAllText(path)), 0, $"loaded from {path}");
        var watch = Stopwatch.StartNew();
        if (trajectory)
        {
            var estimate = EvaluateCommand.EstimateTrajectoryFisher(model, ddpm, sampler == "ddim", options, layers, samplesPerStep, space, seed, device, log, ct);
            AtomicFile.WriteAllText(path, estimate.ToJson(), ct);
            return (estimate, watch.Elapsed.TotalSeconds, $"estimated on {EvaluateCommand.FisherTrajectories} FP trajectories, saved to {path}");
        }
        var (x0, y) = EvaluateCommand.FisherData(model, data, ddpm, options, seed, device, ct);
        try
        {
            var fisher = EvaluateCommand.EstimateFisher(model, diffusion, layers, x0, y, samplesPerStep, space, seed, log, ct);
            AtomicFile.WriteAllText(path, fisher.ToJson(), ct);
            return (fisher, watch.Elapsed.TotalSeconds, $"estimated, saved to {path}");
        }
        finally
        {
            x0.Dispose();
            y.Dispose();
        }
    }
}
