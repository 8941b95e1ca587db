using AdaTSQ.Samples;
using Microsoft.Extensions.Logging;
using TorchSharp;

// AdaTSQ.NET samples. Usage: dotnet run --project AdaTSQ.Samples -c Release -- [sample] [--device cpu|cuda] [--seed N] [--verbose]
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("Usage: ./run.sh [sample] [--device cpu|cuda] [--seed N] [--verbose]");
    Console.WriteLine("Samples:");
    Console.WriteLine("  transformer-rtn   (default) quantize a small seeded transformer with RTN at W8A8, W4A8, W4A16");
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
    default:
        Console.Error.WriteLine($"Unknown sample '{sample}'. Samples: transformer-rtn, train-dit");
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
