using AdaTSQ.Samples;
using Microsoft.Extensions.Logging;
using TorchSharp;

// AdaTSQ.NET samples. Usage: dotnet run --project AdaTSQ.Samples -c Release -- [sample] [--device cpu|cuda] [--seed N] [--verbose]
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("Usage: ./run.sh [sample] [--device cpu|cuda] [--seed N] [--verbose]");
    Console.WriteLine("Samples:");
    Console.WriteLine("  transformer-rtn   (default) quantize a small seeded transformer with RTN at W8A8, W4A8, W4A16");
    Console.WriteLine("  evaluate          FP vs quantized DiT samples: PSNR, SSIM, FID (ResNet-18 features), class accuracy, time, memory");
    Console.WriteLine("                    --model FILE --samples N --steps S --sampler ddim|ddpm --cfg G --methods rtn-w8a8,rtn-w4a8 --layers GLOB --out DIR");
    Console.WriteLine("  fid-stats         ResNet-18 feature statistics of the real Fashion-MNIST test set (FID reference): --count N --output FILE");
    Console.WriteLine("  train-classifier  train the Fashion-MNIST judge classifier: --epochs N --batch B --output FILE");
    Console.WriteLine("  train-dit         train the Fashion-MNIST DiT: --steps N --batch B --lr LR --ema D --work DIR --output FILE --resume");
    Console.WriteLine("                    and W4A16 g32 through the builder; print the relative output error of each");
    return 0;
}
var sample = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal)) ?? "transformer-rtn";
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
        return AdaTSQ.Samples.Evaluation.EvaluateCommand.Run(args, loggers, device, seed, CancellationToken.None);
    case "fid-stats":
        return AdaTSQ.Samples.Evaluation.FidStatsCommand.Run(args);
    case "train-classifier":
        return AdaTSQ.Samples.Training.TrainClassifierCommand.Run(args, device, seed, CancellationToken.None);
    default:
        Console.Error.WriteLine($"Unknown sample '{sample}'. Samples: transformer-rtn, evaluate, fid-stats, train-dit, train-classifier");
        return 2;
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
}
