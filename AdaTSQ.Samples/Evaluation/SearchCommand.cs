using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using AdaTSQ.Calibration;
using AdaTSQ.IO;
using AdaTSQ.Metrics;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Methods.AdaTSQ.Search;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// AdaTSQ's bit-width search on the shipped DiT: every selected layer is quantized once per bit-width
/// (GPTQ with Fisher-weighted trajectory calibration), then one beam search per budget picks a
/// timestep-dynamic policy; each found policy and the best static (time-constant) policy of the same
/// average cost are then evaluated on the evaluation samples (PSNR/SSIM vs FP, FID, class accuracy).
/// Writes results.md/.json, frontier.csv, search-*.json, frontier.png, bits-over-steps.png and heat maps.
/// </summary>
internal static class SearchCommand
{
    private sealed record Row(string Budget, string Kind, string Policy, double AverageWeightBits, double AverageActivationBits, double GBops, double WeightMB,
        double Psnr, double Ssim, double Fid, double Accuracy, double SearchPsnr, double HeldOutPsnr, double SearchSeconds, long ModelCalls);

    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("search");
        string modelPath = Program.Option(args, "--model") ?? EvaluateCommand.DefaultModel;
        int samples = Program.IntOption(args, "--samples", 100), steps = Program.IntOption(args, "--steps", 50), beam = Program.IntOption(args, "--beam", 8);
        int searchSamples = Program.IntOption(args, "--search-samples", 8), heldOutSamples = Program.IntOption(args, "--holdout", 16), calibSamples = Program.IntOption(args, "--calib-samples", 32), fisherSamples = Program.IntOption(args, "--fisher-samples", 16);
        double cfg = Program.DoubleOption(args, "--cfg", 2.0);
        string layers = Program.Option(args, "--layers") ?? "blocks.*";
        var budgets = List(args, "--budgets", "3.5,4,4.5,5,6");
        var pairedBudgets = List(args, "--paired-budgets", "4,6");
        var bits = List(args, "--bits", "3,4,6,8").Select(b => (int)b).ToList();
        var pairedBits = List(args, "--paired-bits", "4,6,8").Select(b => (int)b).ToList();
        // The activation axis (issue 16, item 1): activation bits per layer and step at one static weight width.
        var actBudgets = List(args, "--act-budgets", "");
        var actBits = List(args, "--act-bits", "4,6,8").Select(b => (int)b).ToList();
        int actWeightBits = Program.IntOption(args, "--act-weight-bits", 4);
        bool fisher = !args.Contains("--no-fisher");
        string outDir = Program.Option(args, "--out") ?? "artifacts/search";
        string? stateDir = Program.Option(args, "--state-dir");
        var sensitivityMode = Program.Option(args, "--sensitivity") switch
        {
            null or "per-layer" => SensitivityMode.PerLayerAlpha,
            "cross-layer" => SensitivityMode.CrossLayerFisher,
            var other => throw new ArgumentException($"--sensitivity {other}: use per-layer (default) or cross-layer."),
        };
        int refineRounds = Program.IntOption(args, "--refine-rounds", 0);
        int? refineMoves = Program.Option(args, "--refine-moves") is null ? null : Program.IntOption(args, "--refine-moves", 0);
        var neighbourhood = args.Contains("--refine-across-stages") ? RefinementNeighbourhood.AcrossStages : RefinementNeighbourhood.WithinStage;

        using var model = DiTCheckpoint.Load(modelPath, device: device);
        using var classifier = new ImageClassifier(device: device);
        SafeTensors.LoadInto(classifier, Program.Option(args, "--classifier") ?? EvaluateCommand.DefaultClassifier);
        classifier.eval();
        string statsPath = Program.Option(args, "--real-stats") ?? EvaluateCommand.DefaultRealStats;
        var realStats = File.Exists(statsPath) ? FeatureStatistics.Load(statsPath) : null;
        if (realStats is null) Console.Error.WriteLine($"warning: {statsPath} not found; FID is skipped (make it with: ./run.sh fid-stats).");
        using var features = new ResNet18Features();

        var diffusion = GaussianDiffusion.Create(1000, $"ddim{steps}");
        var sampler = new DiffusionSampler(diffusion);
        var options = new SamplingOptions { Seed = seed + 1, CfgScale = cfg, NullClass = model.NullClass, ClipDenoised = true };
        var labelsArray = Enumerable.Range(0, samples).Select(i => (long)(i % model.Config.NumClasses)).ToArray();
        using var labels = torch.tensor(labelsArray, device: device);
        using var noiseGenerator = new Generator((ulong)seed, device);
        using var noise = torch.randn([samples, model.Config.InChannels, model.Config.InputSize, model.Config.InputSize], generator: noiseGenerator, device: device);
        Console.WriteLine($"Bit-width search on {modelPath}: DDIM {steps} steps, CFG {cfg}, layers {layers}; bits {string.Join("/", bits)} (A8) for budgets {string.Join(", ", budgets)}, " +
            $"W=A bits {string.Join("/", pairedBits)} for budgets {string.Join(", ", pairedBudgets)}; beam {beam}, {searchSamples} search trajectories, " +
            (heldOutSamples > 0 ? $"selection on {heldOutSamples} held-out trajectories" : "selection on the search trajectories") + $"; evaluation on {samples} samples, seed {seed}");

        Tensor Generate(string name) =>
            sampler.SampleDdim((x, t, y) => model.call(x, t, y), noise, labels, options with { Progress = new ConsoleProgressBar(name) }, ct);

        using var fp = Generate("fp");
        (double Psnr, double Ssim, double Fid, double Accuracy) Measure(Tensor x, string name)
        {
            double fid = realStats is null ? double.NaN : FrechetDistance.Compute(features.Statistics(x, name), realStats);
            return (ImageMetrics.Psnr(x, fp), ImageMetrics.Ssim(x, fp), fid, ClassFidelity.Accuracy(classifier, x, labelsArray, model.Config.NumClasses).Overall);
        }
        var fpQuality = Measure(fp, "FP32");

        // 1. Quantize every bit-width once (GPTQ, Fisher-weighted trajectory calibration): the search reuses these versions.
        var union = new BitWidthSearchOptions { WeightBits = bits.Union(pairedBits).Union(actBudgets.Count > 0 ? [actWeightBits] : []).Order().ToList() };
        var selector = new LayerSelector([layers], []);
        var names = ModelSurgery.FindLinears(model).Where(l => selector.Matches(l.Name)).Select(l => l.Name).ToList();
        var watch = Stopwatch.StartNew();
        TemporalFisher? temporalFisher = null;
        if (fisher)
        {
            var (x0, y0) = EvaluateCommand.FisherData(model, "real", sampler, options, seed, device, ct);
            using (x0) using (y0)
                temporalFisher = EvaluateCommand.EstimateFisher(model, diffusion, layers, x0, y0, fisherSamples, FisherLossSpace.Noise, seed, log, ct);
        }
        var builder = new QuantizationBuilder().ForModel(model).Layers(layers).Policy(new SearchSpacePolicy(names, union)).WithLogger(log)
            .CalibrationData(TrajectoryCalibrationSource.ForDiT(model, sampler, ddim: true, new TrajectoryCalibrationOptions
            {
                Samples = calibSamples, Seed = seed + 1000, Sampling = options with { Seed = seed + 2000 },
            }))
            .UseHessianOptimization()
            .WithProgress(new ConsoleProgressBar("quantize"));
        if (temporalFisher is not null) builder.UseFisherCalibration(temporalFisher);
        // --nested: every narrower width is the rounded top bits of the widest width's GPTQ codes (issue 16, item 2).
        bool nested = args.Contains("--nested");
        if (nested) builder.UseNestedWeights(union.WeightBits.Max());
        var quantized = builder.Build().Apply(ct);
        double quantizeSeconds = watch.Elapsed.TotalSeconds;
        Console.WriteLine($"Quantized {names.Count} layers at {string.Join("/", union.WeightBits)} bits in {quantizeSeconds:F1} s (GPTQ{(fisher ? " + Fisher" : "")}{(nested ? $", nested in W{union.WeightBits.Max()}" : "")}).");
        var qLayers = ModelSurgery.FindQuantLinears(model).Where(l => selector.Matches(l.LayerName)).ToList();
        // --integer: the searches and the evaluation samples run on the CPU integer kernels (configs they cannot run fall back).
        using var kernel = args.Contains("--integer") ? new IntegerLinearKernel() : null;
        if (kernel is not null) IntegerLinearKernel.Attach(model, kernel);

        // 2. One search per budget, on trajectories with their own seed (never the evaluation noise).
        var rows = new List<Row> { new("–", "FP32", "full precision", 16, 16, 0, model.parameters().Sum(p => p.numel() * p.ElementSize) / 1e6, double.PositiveInfinity, fpQuality.Ssim, fpQuality.Fid, fpQuality.Accuracy, double.PositiveInfinity, double.PositiveInfinity, 0, 0) };
        var searches = new List<(string Name, BitWidthSearchResult Result)>();
        using var trajectories = SearchTrajectories.ForDiT(model, sampler.DdimSteps(options), searchSamples, seed + 7000);
        // Held-out trajectories (own seed): the final policy and the static reference are chosen on them (issue 16, item 5).
        using var heldOut = heldOutSamples > 0 ? SearchTrajectories.ForDiT(model, sampler.DdimSteps(options), heldOutSamples, seed + 9000) : null;
        var runs = budgets.Select(b => (b, axis: "a8")).Concat(pairedBudgets.Select(b => (b, axis: "wa"))).Concat(actBudgets.Select(b => (b, axis: "act"))).ToList();
        Directory.CreateDirectory(outDir);
        foreach (var (budget, axis) in runs)
        {
            bool paired = axis == "wa", activations = axis == "act";
            string name = activations ? $"W{actWeightBits}, A ≤ {budget:G3}" : paired ? $"W=A ≤ {budget:G3}" : $"A8, W ≤ {budget:G3}";
            string file = FilePrefix(axis, actWeightBits) + budget.ToString("G3", CultureInfo.InvariantCulture);
            var searchOptions = new BitWidthSearchOptions
            {
                WeightBits = paired ? pairedBits : bits, PairActivationBits = paired, BeamWidth = beam,
                Budget = activations ? BitBudget.AverageActivationBits(budget) : BitBudget.AverageWeightBits(budget),
                Axis = activations ? SearchAxis.ActivationBits : SearchAxis.WeightBits, ActivationBits = actBits,
                WeightSpec = activations ? union.WeightSpec with { Bits = actWeightBits } : union.WeightSpec,
                StatePath = stateDir is null ? null : Path.Combine(stateDir, $"search-{file}.safetensors"),
                Sensitivity = sensitivityMode, RefinementRounds = refineRounds, RefinementMovesPerRound = refineMoves,
                RefinementNeighbourhood = neighbourhood, RefinementSeed = seed + 13,
            };
            // The budget is a level too, so a static (time-constant) reference of exactly that average exists.
            searchOptions = searchOptions with { CandidateLevels = searchOptions.Levels().Append(budget).Distinct().Order().ToList() };
            var sensitivity = activations
                ? LayerSensitivity.FromActivationError(qLayers, searchOptions, trajectories, temporalFisher)
                : LayerSensitivity.FromLayers(qLayers, searchOptions, quantized.Layers, temporalFisher);
            var result = new BitWidthSearch(qLayers, trajectories, searchOptions, sensitivity, log, heldOut).Run(new ConsoleProgressBar($"search {file}"), ct);
            searches.Add((name, result));
            File.WriteAllText(Path.Combine(outDir, $"search-{file}.json"), result.ToJson());
            Console.Write(result.FormatSummary());

            // The best static policy within the budget, chosen on the same set as the dynamic one (held-out when given).
            var staticBest = result.StaticReferences.Where(s => (s.AverageActivationBits ?? s.AverageWeightBits) <= budget + 1e-9).MinBy(s => s.SelectionMse);
            // Control: the searched policy's steps in a seeded random order — the same configs and cost, but not
            // the order the search chose. If it does as well, the gain comes from mixing versions over time,
            // not from giving particular steps more bits.
            var shuffled = Shuffle(result.Best, seed + 11);
            var beamPick = ReferenceEquals(result.Best, result.BeamBest) ? null : result.BeamBest;
            foreach (var (kind, point) in new[] { ("dynamic", result.Best), ("beam pick", beamPick), ("shuffled", shuffled), ("static", staticBest) })
            {
                if (point is null) continue;
                foreach (var layer in qLayers) layer.Policy = point.Policy;
                using var x = Generate($"{kind} {file}");
                var q = Measure(x, $"{kind} {file}");
                rows.Add(new Row(name, kind, kind == "static" ? point.Label : kind == "dynamic" ? (beamPick is null ? "searched" : "searched, refined") : kind == "beam pick" ? "searched, before refinement" : "searched, steps shuffled", point.AverageWeightBits,
                    point.AverageActivationBits ?? (paired ? point.AverageWeightBits : searchOptions.ActivationSpec.Bits), point.AverageBitOperations * steps / 1e9,
                    point.WeightMemoryBytes / 1e6, q.Psnr, q.Ssim, q.Fid, q.Accuracy, kind == "shuffled" ? double.NaN : point.FinalPsnr, kind == "shuffled" ? double.NaN : point.HeldOutPsnr ?? double.NaN,
                    kind == "dynamic" ? result.WallTime.TotalSeconds : 0, kind == "dynamic" ? result.ModelEvaluations : 0));
            }
        }
        if (kernel is not null) IntegerLinearKernel.Attach(model, null);
        quantized.Restore();

        // 3. Reports.
        var md = new StringBuilder();
        md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Calibration and quantization of every bit-width: {quantizeSeconds:F0} s. Search: {searchSamples} trajectories; selection on ") +
            (heldOutSamples > 0 ? $"{heldOutSamples} held-out trajectories." : "the search trajectories.") + $" Evaluation: {samples} samples." +
            (kernel is null ? " Fake quantization." : $" Integer kernels: {kernel.IntegerCalls:N0} integer calls, {kernel.FallbackCalls:N0} fallbacks."));
        md.AppendLine();
        md.AppendLine("| budget | policy | avg weight bits | avg activation bits | GBOPs / image | weight versions (MB) | PSNR vs FP (dB) | SSIM vs FP | FID (ResNet-18 features) | class accuracy | PSNR on search set (dB) | PSNR on held-out set (dB) | search time (s) | model calls |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Budget} | {r.Kind}{(r.Kind == "static" ? $" {r.Policy.Replace("static ", "", StringComparison.Ordinal)}" : r.Kind == "shuffled" ? " (control)" : r.Kind == "beam pick" ? " (before refinement)" : "")} | {r.AverageWeightBits:F3} | {r.AverageActivationBits:F3} | {r.GBops:F1} | {r.WeightMB:F2} | {Db(r.Psnr)} | {r.Ssim:F4} | {r.Fid:F2} | {r.Accuracy:P1} | {Db(r.SearchPsnr)} | {Db(r.HeldOutPsnr)} | {(r.SearchSeconds > 0 ? r.SearchSeconds.ToString("F0", CultureInfo.InvariantCulture) : "")} | {(r.ModelCalls > 0 ? r.ModelCalls.ToString("N0", CultureInfo.InvariantCulture) : "")} |");
        Console.WriteLine();
        Console.Write(md);
        File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
        File.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new
        {
            model = modelPath, samples, steps, cfg, seed, layers, beam, integer_kernels = kernel is not null, integer_calls = kernel?.IntegerCalls, fallback_calls = kernel?.FallbackCalls, search_samples = searchSamples, held_out_samples = heldOutSamples, calib_samples = calibSamples, fisher, quantize_seconds = quantizeSeconds,
            sensitivity = sensitivityMode.ToString(), refine_rounds = refineRounds, refine_moves = refineMoves, refine_neighbourhood = neighbourhood.ToString(),
            rows = rows.Select(r => new { r.Budget, r.Kind, r.Policy, r.AverageWeightBits, r.AverageActivationBits, gbops_per_image = r.GBops, weight_mb = r.WeightMB, psnr = Finite(r.Psnr), r.Ssim, fid = Finite(r.Fid), r.Accuracy, search_psnr = Finite(r.SearchPsnr), held_out_psnr = Finite(r.HeldOutPsnr), r.SearchSeconds, r.ModelCalls }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        var csv = new StringBuilder();
        foreach (var (name, result) in searches)
        {
            var lines = result.ToCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (csv.Length == 0) csv.Append("search,").AppendLine(lines[0]);
            foreach (var line in lines.Skip(1)) csv.Append(CultureInfo.InvariantCulture, $"\"{name}\",").AppendLine(line);
        }
        File.WriteAllText(Path.Combine(outDir, "frontier.csv"), csv.ToString());
        SearchPlots.Frontier(Path.Combine(outDir, "frontier.png"), searches);
        SearchPlots.BitsOverSteps(Path.Combine(outDir, "bits-over-steps.png"), searches);
        foreach (var (name, result) in searches)
        {
            string axis = result.Options.Axis == SearchAxis.ActivationBits ? "act" : result.Options.PairActivationBits ? "wa" : "a8";
            string file = FilePrefix(axis, result.Options.WeightSpec.Bits) + result.Options.Budget.Value.ToString("G3", CultureInfo.InvariantCulture);
            SearchPlots.Heatmap(Path.Combine(outDir, $"heatmap-{file}.png"), result, $"Best dynamic policy, {name}: {(axis == "act" ? "activation" : "weight")} bits per layer and step");
        }
        Console.WriteLine($"Wrote {outDir}/results.md, results.json, frontier.csv, frontier.png, bits-over-steps.png, heatmap-*.png and search-*.json.");
        return 0;
    }

    /// <summary>The same per-step configs in a seeded random order of the steps (cost and versions unchanged).</summary>
    private static FrontierPoint Shuffle(FrontierPoint point, long seed)
    {
        var policy = point.Policy;
        var order = Enumerable.Range(0, policy.StepCount).ToArray();
        new Random((int)seed).Shuffle(order);
        var rows = order.Select(k => (IReadOnlyList<LayerQuantConfig>)policy.Layers.Select(l => policy[k, l]).ToList()).ToList();
        return point with
        {
            Label = "shuffled", Policy = new DynamicTimestepPolicy(policy.Layers, rows, policy.OtherLayers, "searched, steps shuffled"),
            StepAverageBits = order.Select(k => point.StepAverageBits[k]).ToList(), StageErrors = [],
        };
    }

    // search-<prefix><budget>.json: a8- (weights searched, A8), wa- (W=A), w4a- (activations searched at W4).
    private static string FilePrefix(string axis, int actWeightBits) => axis switch
    {
        "act" => $"w{actWeightBits}a-",
        "wa" => "wa-",
        _ => "a8-",
    };

    private static string Db(double v) => double.IsInfinity(v) ? "∞" : double.IsNaN(v) ? "–" : v.ToString("F2", CultureInfo.InvariantCulture);

    private static double? Finite(double v) => double.IsFinite(v) ? v : null;

    private static List<double> List(string[] args, string name, string fallback) =>
        (Program.Option(args, name) ?? fallback).Split(',', StringSplitOptions.RemoveEmptyEntries).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToList();
}
