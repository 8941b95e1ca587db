using AdaTSQ.Samples;
using Microsoft.Extensions.Logging;
using TorchSharp;

// AdaTSQ.NET samples. Usage: ./run.sh [sample] [options]; ./run.sh --help lists them.
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("""
        Usage: ./run.sh [sample] [options] [--device cpu|cuda] [--seed N] [--verbose]
        Samples:
          evaluate          (default) FP vs quantized Fashion-MNIST DiT, same seeds: PSNR, SSIM, FID (ResNet-18
                            features), class accuracy (each with a 95 % CI), paired comparisons (ΔPSNR CI, McNemar),
                            sampling and calibration time, weight memory; writes results.md/.json (with per-image
                            values), samples.png and (with gptqf) fisher.json + fisher-alpha.png; docs/evaluation-method.md
                            --model FILE --samples N (1000) --batch B (chunk, 100) --bootstrap R (1000) --compare A,B
                            --legacy-noise --steps S --sampler ddim|ddpm --cfg G --no-clip --layers GLOB --out DIR
                            Each setting the integer kernels support also runs on them (CPU): "<setting> (integer kernels)" rows and a
                            table of integer vs fake-quant samples and sampling time; --no-integer skips that;
                            --integer-only samples such settings on the kernels only (faster; no fake-quant row)
                            --methods M,M,...  each M = <method>-w<bits>a<bits>[-g<group>][-ag<group>][-sq[<alpha>]][-svd[<rank>]][-rot|-rotb<block>][-static[<groups>]][-t<tau>][-nlog|-nrank][-traj][-is][-x0]
                                      -g = weight group, -ag = dynamic activation group along K (per token × group)
                                      -svd = SVDQuant low-rank branch (rank, default 32), -rot = QuaRot Hadamard rotation (Kronecker), -rotb64 = block-diagonal, blocks of 64
                                      gptqf: -t<tau> Fisher temperature, -nlog / -nrank α from log(1 + F/median F) / rank of F (default F itself),
                                             -traj Fisher at the FP sampler's own x_t (64 trajectories; --fisher-data unused), -x0 clean-image loss,
                                             -is importance sampling of the steps
                                      method: rtn | gptq | gptqf (GPTQ + Fisher-weighted temporal calibration) | qdit (Q-DiT group-size
                                              search, GPTQ; --qdit-samples N search trajectories (8); writes qdit-<setting>.json)
                                      default: rtn-w8a8,rtn-w4a8,gptq-w4a8,gptqf-w4a8
                            calibration: --calib-samples N (32) --calib-batch B (16) (trajectories of the sampler, own seeds)
                            Fisher: --fisher-samples N per step (16) --fisher-data real|generated --fisher-temperature T (1)
                                    --fisher-floor F (0.1) --fisher-shared --fisher-use weight|sample|both --fisher-fraction P (0.25)
          compare           methods × bit settings on the Fashion-MNIST DiT (issue 14): PSNR/SSIM vs FP, FID, class accuracy (95 % CIs),
                            AdaTSQ's wins/ties/losses per baseline (a win only where the CIs are disjoint), calibration time, peak
                            memory, weight MB; every cell cached (a rerun resumes); writes results.md/.json and psnr-vs-bits.png;
                            docs/comparison-fashion-dit.md
                            --methods rtn,svdquant,adatsq-svd,gptq-svd,viditq,qdit,quarot,smoothquant,gptq,ptq4dit,adatsq
                                      (also quarot-gptq, ptq4dit-gptq, htg, htg-gptq, tqdit, d2quant) --bits W8A8,W4A8,W4A4,W3A3
                            --samples N (1000) --batch B (100) --steps S (50) --out DIR (artifacts/compare) --cache DIR (<out>/cache)
                            --bootstrap R (1000) --judge METHOD (adatsq-svd) --retry-failed --no-integer; calibration and Fisher options as for evaluate
          search            AdaTSQ bit-width search: quantize every bit-width once (GPTQ + Fisher), one beam search per budget,
                            evaluate each searched policy and the best static one of the same cost; writes results.md/.json,
                            frontier.csv/.png, bits-over-steps.png, heatmap-*.png, search-*.json (36 min with the defaults on 2 cores)
                            --budgets 3.5,4,4.5,5,6 --bits 3,4,6,8 (activations 8) --paired-budgets 4,6 --paired-bits 4,6,8 (W=A)
                            --beam K (8) --search-samples N (8) --samples N (100) --steps S (50) --calib-samples N (32)
                            --act-budgets 5,6 (none): also search activation bits per layer and step (--act-bits 4,6,8) at one
                            static weight width (--act-weight-bits 4), budgets in average activation bits
                            --integer: searches and evaluation samples on the CPU integer kernels (unsupported configs fall back)
                            --holdout N (16): the final policy and the static reference are selected on N held-out trajectories
                            (own seed); 0 selects on the search trajectories (as before 2026-12-04)
                            --nested: the narrower weight widths are sliced from the widest one's GPTQ codes (one nested code set)
                            --no-fisher --state-dir DIR (save/resume each search) --layers GLOB --out DIR
                            --sensitivity per-layer|cross-layer (per-layer) --refine-rounds N (0: off) --refine-moves N (all)
                            --refine-across-stages (pairs of moves may span stages)
          fisher-plot       plot α over steps from a fisher.json written by evaluate: --input FILE --output PNG
                            --fisher-temperature T --fisher-floor F --fisher-normalization power|log|rank --also-temperatures 2,4
                            --also-normalizations log,rank --loss Noise|CleanImage
          transformer-rtn   quantize a small seeded transformer with RTN at W8A8, W4A8, W4A16, W4A16 g32; print the errors
          fid-stats         ResNet-18 feature statistics of the real Fashion-MNIST test set (the FID reference; all 10,000 images
                            unless --count N): --count N --output FILE
          train-dit         train the Fashion-MNIST DiT: --steps N --batch B --lr LR --ema D --checkpoint-every K --work DIR --output FILE --resume
          train-classifier  train the Fashion-MNIST judge classifier: --epochs N --batch B --output FILE
        """);
    return 0;
}
var sample = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "evaluate";
string deviceName = Option(args, "--device") ?? "cpu";
long seed = long.Parse(Option(args, "--seed") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
bool verbose = args.Contains("--verbose");

using var loggers = LoggerFactory.Create(b => b
    .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
    .SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning));

if (deviceName == "cuda" && !torch.cuda.is_available())
{
    Console.Error.WriteLine("--device cuda: CUDA is not available with this libtorch backend (build with -p:TorchBackend=cuda-windows on a GPU machine).");
    return 2;
}
var device = torch.device(deviceName);

// Bad options and library errors end the sample with their message, not a stack trace.
try
{
    switch (sample)
    {
        case "transformer-rtn":
            return TransformerRtnSample.Run(loggers, device, seed);
        case "train-dit":
        {
            using var cts = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
            return AdaTSQ.Samples.Training.TrainDiTCommand.Run(args, loggers, device, seed, cts.Token);
        }
        case "evaluate":
        {
            using var cts = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
            return AdaTSQ.Samples.Evaluation.EvaluateCommand.Run(args, loggers, device, seed, cts.Token);
        }
        case "compare":
        {
            using var cts = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
            return AdaTSQ.Samples.Evaluation.CompareCommand.Run(args, loggers, device, seed, cts.Token);
        }
        case "search":
        {
            using var cts = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
            return AdaTSQ.Samples.Evaluation.SearchCommand.Run(args, loggers, device, seed, cts.Token);
        }
        case "fisher-plot":
        {
            string input = Option(args, "--input") ?? "artifacts/eval/fisher.json";
            string output = Option(args, "--output") ?? Path.ChangeExtension(input, ".png");
            var weighting = new AdaTSQ.Methods.AdaTSQ.Fisher.FisherWeighting
            {
                Temperature = double.Parse(Option(args, "--fisher-temperature") ?? "1", System.Globalization.CultureInfo.InvariantCulture),
                Floor = double.Parse(Option(args, "--fisher-floor") ?? "0.1", System.Globalization.CultureInfo.InvariantCulture),
                Normalization = Enum.Parse<AdaTSQ.Methods.AdaTSQ.Fisher.FisherNormalization>(Option(args, "--fisher-normalization") ?? "power", ignoreCase: true),
            };
            var others = (Option(args, "--also-temperatures") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries)
                .Select(t => weighting with { Temperature = double.Parse(t, System.Globalization.CultureInfo.InvariantCulture) })
                .Concat((Option(args, "--also-normalizations") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries)
                    .Select(n => weighting with { Normalization = Enum.Parse<AdaTSQ.Methods.AdaTSQ.Fisher.FisherNormalization>(n, ignoreCase: true) })).ToList();
            var fisher = AdaTSQ.Methods.AdaTSQ.Fisher.TemporalFisher.FromJson(File.ReadAllText(input));
            AdaTSQ.Samples.Evaluation.FisherPlot.Save(output, fisher, weighting, others, Option(args, "--loss") ?? "Noise");
            Console.WriteLine($"Wrote {output}");
            return 0;
        }
        case "fid-stats":
            return AdaTSQ.Samples.Evaluation.FidStatsCommand.Run(args);
        case "train-classifier":
            return AdaTSQ.Samples.Training.TrainClassifierCommand.Run(args, device, seed, CancellationToken.None);
        default:
            Console.Error.WriteLine($"Unknown sample '{sample}'. Samples: evaluate, compare, search, fisher-plot, transformer-rtn, fid-stats, train-dit, train-classifier (./run.sh --help).");
            return 2;
    }
}
catch (Exception e) when (e is ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException or AdaTSQ.Abstractions.AdaTSQException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled.");
    return 130;
}

/// <summary>Entry point of the samples.</summary>
internal static partial class Program
{
    /// <summary>The value after <paramref name="name"/> in <paramref name="args"/>, or null.</summary>
    public static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>The integer after <paramref name="name"/>, or <paramref name="fallback"/> when the option is absent.</summary>
    public static int IntOption(string[] args, string name, int fallback) =>
        Option(args, name) is { } v ? int.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : fallback;

    /// <summary>The number after <paramref name="name"/>, or <paramref name="fallback"/> when the option is absent.</summary>
    public static double DoubleOption(string[] args, string name, double fallback) =>
        Option(args, name) is { } v ? double.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : fallback;
}
