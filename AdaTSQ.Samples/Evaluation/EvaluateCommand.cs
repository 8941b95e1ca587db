using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AdaTSQ.Calibration;
using AdaTSQ.Data;
using AdaTSQ.Evaluation;
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
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.ViDiTQ;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// Generates the same seeded samples with the full-precision DiT and with each quantized setting, chunk by
/// chunk (<see cref="ChunkedEvaluator"/>), and reports PSNR/SSIM against full precision (mean ± 95 % CI),
/// FID (ResNet-18 features) against the real test set and class accuracy by the shipped classifier (both with
/// bootstrap CIs), paired comparisons of the quantized rows, wall time and weight memory; writes JSON (with the
/// per-image values), Markdown and a PNG grid. Design and column meanings: docs/evaluation-method.md.
/// </summary>
internal static class EvaluateCommand
{
    public const string DefaultModel = "models/fashion-dit.safetensors";
    public const string DefaultClassifier = "models/fashion-classifier.safetensors";
    public const string DefaultRealStats = "models/fashion-test-resnet18-stats.safetensors";

    /// <summary>The same setting run on the integer kernels instead of fake quantization.</summary>
    private sealed record IntegerRow(string Setting, double PsnrVsFakeQuant, double MaxAbsVsFakeQuant, double FakeSeconds, double IntegerSeconds, long IntegerCalls, long FallbackCalls, double PackedMB);

    /// <summary>One row of the report: the summary, the per-image values behind it, and the costs.</summary>
    private sealed record Row(string Key, SettingSummary Summary, SettingAccumulator Values, double Seconds, double WeightMB, double QuantizedLayerMB, double CalibrationSeconds, double PeakResidentGB);

    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("evaluate");
        string modelPath = Program.Option(args, "--model") ?? DefaultModel;
        int samples = Program.IntOption(args, "--samples", 1000), steps = Program.IntOption(args, "--steps", 50);
        int chunkSize = Program.IntOption(args, "--batch", 100);
        int resamples = Program.IntOption(args, "--bootstrap", Bootstrap.DefaultResamples);
        string? compare = Program.Option(args, "--compare");
        // --legacy-noise: x_T drawn as one [samples, C, H, W] tensor from one generator, as evaluate did before the
        // chunked evaluator; with --batch equal to --samples it reproduces the old runs' samples.
        var noiseScheme = args.Contains("--legacy-noise") ? NoiseScheme.SharedStream : NoiseScheme.PerSample;
        double cfg = Program.DoubleOption(args, "--cfg", 2.0);
        string sampler = Program.Option(args, "--sampler") ?? "ddim";
        string layers = Program.Option(args, "--layers") ?? "blocks.*";
        var settings = (Program.Option(args, "--methods") ?? "rtn-w8a8,rtn-w4a8,gptq-w4a8,gptqf-w4a8").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(SettingCatalog.ParseSetting).ToList();
        int calibSamples = Program.IntOption(args, "--calib-samples", 32), calibBatch = Program.IntOption(args, "--calib-batch", 16);
        var (fisherSamples, fisherData, weighting, fisherUse, fisherFraction) = FisherCommandOptions.Parse(args);
        string outDir = Program.Option(args, "--out") ?? "artifacts/eval";
        bool integer = !args.Contains("--no-integer");
        // --integer-only: a setting the integer kernels run is sampled on them only (they equal fake quantization up to
        // float rounding, and are several times faster), so more samples fit in the same time.
        bool integerOnly = args.Contains("--integer-only");
        if (integerOnly && !integer) throw new ArgumentException("--integer-only and --no-integer exclude each other.");
        if (resamples < 2) throw new ArgumentException($"--bootstrap {resamples}: at least 2 resamples.");

        using var model = DiTCheckpoint.Load(modelPath, device: device);
        using var classifier = new ImageClassifier(device: device);
        SafeTensors.LoadInto(classifier, Program.Option(args, "--classifier") ?? DefaultClassifier);
        classifier.eval();
        string statsPath = Program.Option(args, "--real-stats") ?? DefaultRealStats;
        var realStats = File.Exists(statsPath) ? FeatureStatistics.Load(statsPath) : null;
        if (realStats is null) Console.Error.WriteLine($"warning: {statsPath} not found; FID is skipped (make it with: ./run.sh fid-stats).");
        else if (realStats.Count < 10_000)
            Console.Error.WriteLine($"warning: {statsPath} holds the statistics of {realStats.Count} real images, not all 10,000 test images (regenerate with: ./run.sh fid-stats --count 10000).");
        using var features = new ResNet18Features();

        var diffusion = GaussianDiffusion.Create(1000, sampler == "ddim" ? $"ddim{steps}" : steps.ToString(CultureInfo.InvariantCulture));
        var ddpm = new DiffusionSampler(diffusion);
        // Pixel-space models need x̂0 clipped to the data range [−1, 1] at every step (as DDPM's pixel models
        // do); the official DiT samples latents without clipping. --no-clip turns it off.
        bool clip = !args.Contains("--no-clip");
        var options = new SamplingOptions { Seed = seed + 1, CfgScale = cfg, NullClass = model.NullClass, ClipDenoised = clip };
        var evaluator = new ChunkedEvaluator(new ChunkedEvaluationOptions
        {
            Samples = samples, ChunkSize = chunkSize, Seed = seed, Classes = model.Config.NumClasses, Noise = noiseScheme,
            SampleShape = [model.Config.InChannels, model.Config.InputSize, model.Config.InputSize],
        }, device, log);
        var scorers = new ImageScorers
        {
            Classify = x => classifier.Predict(x),
            Features = realStats is null ? null : features.ComputeRows,
            FeatureDimension = ResNet18Features.Dimension,
        };
        Directory.CreateDirectory(outDir);
        // The FP samples of every chunk go to disk once and are read back for each setting (3 KB per image), so only
        // one chunk of images is in memory and no setting needs the FP model run again.
        var fpStore = new ReferenceChunkStore(Path.Combine(outDir, "fp-reference"));
        var fakeStore = new ReferenceChunkStore(Path.Combine(outDir, "fake-quant-reference"));
        int gridColumns = Math.Min(Math.Min(samples, chunkSize), 20);
        var grid = new List<Tensor>();
        Console.WriteLine($"Evaluating {modelPath}: {samples} samples per setting ({samples / model.Config.NumClasses} per class) in chunks of {chunkSize}, {sampler} {steps} steps, CFG {cfg}, x̂0 clipping {(clip ? "on" : "off")}, seed {seed} ({(noiseScheme == NoiseScheme.PerSample ? "per-sample noise" : "legacy single-stream noise")}); quantized layers: {layers}");

        // Samples one chunk; chunk k's step noise (DDPM only; DDIM η = 0 has none) is seeded by the chunk, so with one chunk it is the old runs'.
        ChunkSampler Sampler(Stopwatch clock) => (chunk, token) =>
        {
            clock.Start();
            try
            {
                var o = options with { Seed = seed + 1 + 100_000L * chunk.Index };
                return sampler == "ddim"
                    ? ddpm.SampleDdim((x, t, y) => model.call(x, t, y), chunk.Noise, chunk.Labels, o, token)
                    : ddpm.SampleDdpm((x, t, y) => model.call(x, t, y), chunk.Noise, chunk.Labels, o, token);
            }
            finally { clock.Stop(); }
        };
        void KeepForGrid(EvaluationChunk chunk, Tensor images)
        {
            if (chunk.Index == 0) grid.Add(images[..gridColumns].detach().clone().DetachFromDisposeScope());
        }
        Row Evaluate(string key, string name, Func<EvaluationChunk, Tensor>? reference, Action<EvaluationChunk, Tensor>? onSampled, double weightMB, double quantizedMB, double calibrationSeconds, out double seconds)
        {
            var accumulator = new SettingAccumulator(name, scorers);
            var clock = new Stopwatch();
            evaluator.Evaluate(Sampler(clock), accumulator, reference, (c, x) => { KeepForGrid(c, x); onSampled?.Invoke(c, x); }, new ConsoleProgressBar(key), ct);
            seconds = clock.Elapsed.TotalSeconds;
            var summary = accumulator.Summarize(realStats, resamples, 0.95, checked((int)seed), new ConsoleProgressBar(key));
            using var self = Process.GetCurrentProcess();
            return new Row(key, summary, accumulator, seconds, weightMB, quantizedMB, calibrationSeconds, self.PeakWorkingSet64 / 1e9);
        }

        long floatBytes = model.parameters().Sum(p => p.numel() * p.ElementSize);
        var rows = new List<Row>();
        var integerRows = new List<IntegerRow>();
        rows.Add(Evaluate("FP32", "FP32", null, fpStore.Save, floatBytes / 1e6, 0, 0, out double fpSeconds));
        Tensor FpReference(EvaluationChunk c) => fpStore.Load(c, device);
        var fishers = new Dictionary<FisherVariant, (TemporalFisher Fisher, double Seconds)>();
        (Tensor X0, Tensor Y)? fisherX0 = null;     // the Fisher's x0, made once and shared by the loss spaces
        TemporalFisher FisherFor(FisherVariant variant)
        {
            if (!fishers.TryGetValue(variant, out var entry))
            {
                var watch = Stopwatch.StartNew();
                TemporalFisher estimate;
                if (variant.Inputs == FisherInputs.Trajectory)
                    estimate = EstimateTrajectoryFisher(model, ddpm, sampler == "ddim", options, layers, fisherSamples, variant.Space, seed, device, log, ct);
                else
                {
                    fisherX0 ??= FisherData(model, fisherData, ddpm, options, seed, device, ct);
                    estimate = EstimateFisher(model, diffusion, layers, fisherX0.Value.X0, fisherX0.Value.Y, fisherSamples, variant.Space, seed, log, ct);
                }
                fishers[variant] = entry = (estimate, watch.Elapsed.TotalSeconds);
            }
            return entry.Fisher;
        }
        // qdit: Q-DiT's group-size search (GPTQ weights) scored on --qdit-samples DDIM trajectories of their own seed, made once.
        using var qditTrajectories = new DisposableLazy<SearchTrajectories>(() =>
            SearchTrajectories.ForDiT(model, ddpm.DdimSteps(options), Program.IntOption(args, "--qdit-samples", 8), seed + 7000));
        using var viditqTrajectories = new DisposableLazy<SearchTrajectories>(() =>
            SearchTrajectories.ForDiT(model, ddpm.DdimSteps(options with { Seed = seed + 3000 }), samples: 8, seed + 7000));
        var services = new SettingServices
        {
            Layers = layers, Seed = seed, Weighting = weighting, FisherUse = fisherUse, FisherFraction = fisherFraction, Fisher = FisherFor,
            Model = model,
            ViDiTQMixedPrecision = () => (viditqTrajectories.Value,
                [new ClassProbabilityMetric(classifier)]),
            QDitSearch = () => (model, qditTrajectories.Value),
            Calibration = _ => TrajectoryCalibrationSource.ForDiT(model, ddpm, sampler == "ddim", new TrajectoryCalibrationOptions
            {
                Samples = calibSamples, BatchSize = calibBatch, Seed = seed + 1000, Sampling = options with { Seed = seed + 2000 },
            }),
            CalibrationProgress = s => new ConsoleProgressBar($"calibrate {s.Name}"),
        };
        foreach (var setting in settings)
        {
            var builder = new QuantizationBuilder().ForModel(model).WithLogger(log);
            SettingCatalog.Configure(builder, setting, services, out var cleanup);
            using var undo = cleanup;   // PTQ4DiT's fold, undone after Restore() below (using-disposal runs last)
            double extraSeconds = setting.Method == "gptqf" ? fishers[setting.Fisher].Seconds : 0;
            var result = builder.Build().Apply(ct);
            if (result.QDit is { } qdit)
            {
                Console.Write(qdit.FormatSummary());
                File.WriteAllText(Path.Combine(outDir, $"qdit-{setting.Name.ToLowerInvariant()}.json"), qdit.ToJson());
            }
            double quantizedModelMB = (floatBytes - result.FloatWeightBytes + result.QuantizedWeightBytes) / 1e6;
            double quantizedLayerMB = result.QuantizedWeightBytes / 1e6;
            double calibrationSeconds = result.Elapsed.TotalSeconds + extraSeconds;
            string? why = IntegerLinearKernel.WhyNotSupported(new LayerQuantConfig(setting.Weights, setting.Activations))
                ?? (ModelSurgery.FindQuantLinears(model).FirstOrDefault(l => l.InputQuantizer is not null) is { } custom
                    ? $"{custom.LayerName}: the inputs use the custom activation quantizer '{custom.InputQuantizer!.Description}', which the integer kernels do not run" : null);
            bool runsOnKernels = integer && why is null && device.type == DeviceType.CPU;
            bool fakeRuns = !(integerOnly && runsOnKernels);
            double seconds = double.NaN;
            if (fakeRuns)
                rows.Add(Evaluate(setting.Name, setting.Name, FpReference, runsOnKernels ? fakeStore.Save : null, quantizedModelMB, quantizedLayerMB, calibrationSeconds, out seconds));
            // The same quantized model on the integer kernels (CPU; W8A8 / W4A8 / W4A4, dynamic per-token or per-group
            // activations): the same noise, so it should give the fake-quant samples up to float rounding, faster.
            if (runsOnKernels)
            {
                using var kernel = new IntegerLinearKernel();
                IntegerLinearKernel.Attach(model, kernel);
                var vsFake = new List<double>();
                double maxAbs = 0;
                void CompareWithFake(EvaluationChunk c, Tensor x)
                {
                    using var fake = fakeStore.Load(c, device);
                    vsFake.AddRange(ImageMetrics.PsnrPerImage(x, fake));
                    using var diff = (x - fake).abs().max();
                    maxAbs = Math.Max(maxAbs, diff.item<float>());
                }
                try
                {
                    rows.Add(Evaluate(setting.Name + "-INT", setting.Name + " (integer kernels)", FpReference, fakeRuns ? CompareWithFake : null,
                        quantizedModelMB, quantizedLayerMB, fakeRuns ? 0 : calibrationSeconds, out double intSeconds));
                    if (fakeRuns)
                        integerRows.Add(new IntegerRow(setting.Name, vsFake.Average(), maxAbs, seconds, intSeconds, kernel.IntegerCalls, kernel.FallbackCalls, kernel.PackedWeightBytes / 1e6));
                }
                finally { IntegerLinearKernel.Attach(model, null); }
            }
            else if (integer) log.LogInformation("{Setting}: not run on the integer kernels ({Why})", setting.Name, why ?? $"device {device}");
            result.Restore();
        }

        var comparisons = Comparisons(rows, compare);
        var md = new StringBuilder();
        string fidReference = realStats is null ? "no FID (no reference statistics)" : $"FID against the ResNet-18 feature statistics of {realStats.Count} real test images ({realStats.Source})";
        md.AppendLine(CultureInfo.InvariantCulture, $"{samples} generated samples per row ({samples / model.Config.NumClasses} per class; chunks of {chunkSize}), {sampler} {steps} steps, CFG {cfg}, seed {seed}, {(noiseScheme == NoiseScheme.PerSample ? "per-sample noise" : "legacy single-stream noise")}; quantized layers: {layers}. {fidReference}.");
        md.AppendLine(CultureInfo.InvariantCulture, $"Intervals are 95 %: Student-t for the PSNR and SSIM means; bootstrap over the generated samples ({resamples} resamples, seed {seed}): percentile for accuracy, estimate ± 1.96 · bootstrap SD for FID (the real statistics fixed). Method: docs/evaluation-method.md.");
        md.AppendLine();
        md.AppendLine("| setting | n | PSNR vs FP (dB, mean ± 95 % CI) | SSIM vs FP (mean ± 95 % CI) | FID (ResNet-18 features) [95 % CI] | class accuracy [95 % CI] | sampling time (s) | calibration + quantization time (s) | model weights (MB) | peak resident (GB) |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            var s = r.Summary;
            md.AppendLine(CultureInfo.InvariantCulture, $"| {s.Name} | {s.Count} | {PlusMinus(s.Psnr, "F2")} | {(s.Ssim is { } ssim ? PlusMinus(ssim, "F4") : "–")} | {(s.Fid is { } fid ? Bracket(fid, "F2", 1) : "–")} | {(s.Accuracy is { } a ? Bracket(a, "F1", 100) + " %" : "–")} | {r.Seconds:F1} | {r.CalibrationSeconds:F1} | {r.WeightMB:F2} | {r.PeakResidentGB:F2} |");
        }
        if (comparisons.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("Paired comparisons (same noise and labels; Δ = B − A, Student-t 95 % CI of the mean per-image difference; McNemar's exact test on per-image class correctness):");
            md.AppendLine();
            md.AppendLine("| A | B | pairs | ΔPSNR (dB) [95 % CI] | ΔSSIM [95 % CI] | accuracy A → B | only A right / only B right | McNemar p |");
            md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
            foreach (var c in comparisons)
                md.AppendLine(CultureInfo.InvariantCulture, $"| {c.A} | {c.B} | {c.Psnr.Count} | {Bracket(c.Psnr.Difference, "+0.000;-0.000", 1)} | {(c.Ssim is { } ds ? Bracket(ds.Difference, "+0.0000;-0.0000", 1) : "–")} | {(c.McNemar is { } m ? $"{(double)(m.Both + m.OnlyA) / m.Count:P1} → {(double)(m.Both + m.OnlyB) / m.Count:P1}" : "–")} | {(c.McNemar is { } m2 ? $"{m2.OnlyA} / {m2.OnlyB}" : "–")} | {(c.McNemar is { } m3 ? m3.PValue.ToString("G3", CultureInfo.InvariantCulture) : "–")} |");
        }
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
        static double? Finite(double v) => double.IsFinite(v) ? v : null;
        static object? Interval(ConfidenceInterval? ci) => ci is { } c ? new { estimate = Finite(c.Estimate), lower = Finite(c.Lower), upper = Finite(c.Upper), level = c.Level, method = c.Method } : null;
        File.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new
        {
            model = modelPath, samples, chunk_size = chunkSize, noise = noiseScheme.ToString(), sampler, steps, cfg, seed, layers, bootstrap_resamples = resamples,
            real_stats = realStats?.Source, real_stats_count = realStats?.Count,
            calib_samples = calibSamples, fisher_samples_per_step = fisherSamples, fisher_data = fisherData, fisher_weighting = weighting, fisher_use = fisherUse.ToString(),
            integer_kernels = integerRows.Select(r => new { r.Setting, psnr_vs_fake_quant = Finite(r.PsnrVsFakeQuant), max_abs_vs_fake_quant = r.MaxAbsVsFakeQuant, fake_quant_seconds = r.FakeSeconds, integer_seconds = r.IntegerSeconds, integer_calls = r.IntegerCalls, fallback_calls = r.FallbackCalls, packed_weights_mb = r.PackedMB }),
            rows = rows.Select(r => new
            {
                setting = r.Summary.Name, key = r.Key, n = r.Summary.Count, calibration_seconds = r.CalibrationSeconds, sampling_seconds = r.Seconds, weight_mb = r.WeightMB, peak_resident_gb = r.PeakResidentGB,
                psnr = Interval(r.Summary.Psnr), ssim = Interval(r.Summary.Ssim), fid = Interval(r.Summary.Fid), fid_reference_count = r.Summary.FidReferenceCount, class_accuracy = Interval(r.Summary.Accuracy),
                per_image = new { psnr = r.Values.Psnr.Select(Finite), ssim = r.Values.Ssim, correct = r.Values.Correct },
            }),
            comparisons = comparisons.Select(c => new
            {
                a = c.A, b = c.B, pairs = c.Psnr.Count, excluded_pairs = c.Psnr.Excluded, delta_psnr = Interval(c.Psnr.Difference), delta_ssim = Interval(c.Ssim?.Difference),
                mcnemar = c.McNemar is { } m ? new { both = m.Both, only_a = m.OnlyA, only_b = m.OnlyB, neither = m.Neither, p = m.PValue } : null,
            }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        ImageGrid.Save(Path.Combine(outDir, "samples.png"), grid, columns: gridColumns);
        foreach (var (variant, (fisher, fisherSeconds)) in fishers)
        {
            string suffix = variant.Suffix;
            string loss = variant.Space + (variant.Inputs == FisherInputs.Trajectory ? ", trajectory" : "");
            File.WriteAllText(Path.Combine(outDir, $"fisher{suffix}.json"), fisher.ToJson());
            // The α of every gptqf setting on this estimate that changes the temperature or the normalization, beside the shared weighting's.
            FisherPlot.Save(Path.Combine(outDir, $"fisher-alpha{suffix}.png"), fisher, weighting,
                settings.Where(x => x.Method == "gptqf" && x.Fisher == variant && (x.FisherTemperature is not null || x.FisherNormalization is not null))
                    .Select(x => SettingCatalog.WeightingOf(x, weighting)), loss);
            Console.WriteLine($"Wrote {outDir}/fisher{suffix}.json and fisher-alpha{suffix}.png (temporal Fisher, {loss} loss: {fisherSeconds:F1} s).");
        }
        Console.WriteLine($"Wrote {outDir}/results.md, results.json and samples.png (rows: {string.Join(", ", rows.Select(r => r.Summary.Name))}); FP reference chunks in {fpStore.DirectoryPath}.");
        foreach (var t in grid) t.Dispose();
        fisherX0?.X0.Dispose();
        fisherX0?.Y.Dispose();
        return 0;
    }

    private sealed record Comparison(string A, string B, PairedDifference Psnr, PairedDifference? Ssim, McNemarResult? McNemar);

    /// <summary>
    /// The paired comparisons to report: --compare A,B (row keys such as RTN-W4A8 or RTN-W4A8-INT, or full row
    /// names), or by default every quantized row against the first quantized row.
    /// </summary>
    private static List<Comparison> Comparisons(List<Row> rows, string? compare)
    {
        var quantized = rows.Skip(1).ToList();
        List<(Row A, Row B)> pairs;
        if (compare is not null)
        {
            var names = compare.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (names.Length != 2) throw new ArgumentException($"--compare {compare}: expected two rows A,B (e.g. --compare RTN-W4A8-INT,GPTQ-W4A8-INT).");
            Row Find(string n) => rows.FirstOrDefault(r => string.Equals(r.Key, n, StringComparison.OrdinalIgnoreCase) || string.Equals(r.Summary.Name, n, StringComparison.OrdinalIgnoreCase))
                ?? throw new ArgumentException($"--compare: no row '{n}'; rows are {string.Join(", ", rows.Select(r => r.Key))}.");
            pairs = [(Find(names[0]), Find(names[1]))];
        }
        else pairs = quantized.Skip(1).Select(b => (quantized[0], b)).ToList();
        return pairs.Select(p => new Comparison(p.A.Summary.Name, p.B.Summary.Name,
            PairedComparison.MeanDifference(p.A.Values.Psnr, p.B.Values.Psnr),
            p.A.Values.Ssim.Count > 0 ? PairedComparison.MeanDifference(p.A.Values.Ssim, p.B.Values.Ssim) : null,
            p.A.Values.Correct.Count > 0 ? PairedComparison.McNemar(p.A.Values.Correct, p.B.Values.Correct) : null)).ToList();
    }

    /// <summary>"36.47 ± 0.21" for a symmetric interval, "∞" for identical images.</summary>
    private static string PlusMinus(ConfidenceInterval ci, string format) =>
        double.IsInfinity(ci.Estimate) ? "∞"
        : ci.Estimate.ToString(format, CultureInfo.InvariantCulture) + (double.IsNaN(ci.Lower) ? "" : " ± " + ci.HalfWidth.ToString(format, CultureInfo.InvariantCulture));

    /// <summary>"226.01 [219.3, 233.4]", values scaled by <paramref name="scale"/> (100 for percentages).</summary>
    private static string Bracket(ConfidenceInterval ci, string format, double scale) =>
        $"{(ci.Estimate * scale).ToString(format, CultureInfo.InvariantCulture)} [{(ci.Lower * scale).ToString(format, CultureInfo.InvariantCulture)}, {(ci.Upper * scale).ToString(format, CultureInfo.InvariantCulture)}]";

    /// <summary>The temporal Fisher of the FP model's selected layers, from real training images or from its own samples.</summary>
    internal static TemporalFisher EstimateFisher(DiT model, GaussianDiffusion diffusion, string layers, Tensor x0, Tensor y, int samplesPerStep,
        FisherLossSpace space, long seed, ILogger log, CancellationToken ct)
    {
        var weights = FisherWeights(model, layers);
        var estimator = new TemporalFisherEstimator((x, t, l) => model.call(x, t, l), diffusion, x0, y,
            new TemporalFisherOptions { SamplesPerStep = samplesPerStep, Seed = seed + 5000, LossSpace = space }, log);
        return estimator.Estimate(weights, new ConsoleProgressBar("fisher"), ct);
    }

    /// <summary>The trajectories a -traj Fisher estimate runs the FP sampler on (in one batch).</summary>
    internal const int FisherTrajectories = 64;

    /// <summary>
    /// The temporal Fisher of the FP model's selected layers on its own sampling trajectories (gptqf -traj,
    /// <see cref="FisherInputs.Trajectory"/>): <see cref="FisherTrajectories"/> trajectories of the evaluation's sampler
    /// (DDIM or DDPM, same CFG and clipping) from noise of seed + 3000 (sampler seed + 3001, as the generated Fisher
    /// data), round-robin labels; the steps' samples are drawn with seed + 5000. No x0 is needed (--fisher-data is not used).
    /// </summary>
    internal static TemporalFisher EstimateTrajectoryFisher(DiT model, DiffusionSampler sampler, bool ddim, SamplingOptions options, string layers, int samplesPerStep,
        FisherLossSpace space, long seed, Device device, ILogger log, CancellationToken ct)
    {
        var weights = FisherWeights(model, layers);
        var c = model.Config;
        using var y = torch.tensor(Enumerable.Range(0, FisherTrajectories).Select(i => (long)(i % c.NumClasses)).ToArray(), device: device);
        using var generator = new Generator((ulong)(seed + 3000), device);
        using var noise = torch.randn([FisherTrajectories, c.InChannels, c.InputSize, c.InputSize], generator: generator, device: device);
        TrajectorySampler run = ddim ? sampler.SampleDdim : sampler.SampleDdpm;
        var estimator = new TemporalFisherEstimator((x, t, l) => model.call(x, t, l), sampler.Diffusion, run, noise, y, options with { Seed = seed + 3001 },
            new TemporalFisherOptions { SamplesPerStep = samplesPerStep, Seed = seed + 5000, LossSpace = space }, log);
        return estimator.Estimate(weights, new ConsoleProgressBar("fisher (trajectories)"), ct);
    }

    private static List<(string Name, Tensor Weight)> FisherWeights(DiT model, string layers)
    {
        var selector = new LayerSelector([layers], []);
        return ModelSurgery.FindLinears(model).Where(l => selector.Matches(l.Name)).Select(l => (l.Name, (Tensor)l.Layer.weight!)).ToList();
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
