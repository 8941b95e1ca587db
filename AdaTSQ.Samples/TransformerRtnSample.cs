using System.Globalization;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Models;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Samples;

/// <summary>
/// Quantizes a small seeded transformer with RTN at several settings through the builder and prints
/// the relative output error of each against full precision on held-out inputs.
/// </summary>
internal static class TransformerRtnSample
{
    public static int Run(ILoggerFactory loggers, Device device, long seed)
    {
        var log = loggers.CreateLogger("transformer-rtn");
        using var model = new TinyTransformer(width: 128, depth: 4, heads: 4, seed: seed, device: device);
        model.eval();
        var gen = new Generator((ulong)seed + 1, device);
        var calibration = Enumerable.Range(0, 8).Select(_ => torch.randn([4, 16, 128], generator: gen, device: device)).ToList();
        using var test = torch.randn([16, 16, 128], generator: gen, device: device);
        using var reference = Forward(model, test);

        var settings = new (string Name, QuantSpec Weights, QuantSpec Activations)[]
        {
            ("W8A8", QuantSpec.Weight(8), QuantSpec.Activation(8)),
            ("W4A8", QuantSpec.Weight(4), QuantSpec.Activation(8)),
            ("W4A16", QuantSpec.Weight(4), QuantSpec.FullPrecision),
            ("W4A16 g32", QuantSpec.Weight(4, groupSize: 32), QuantSpec.FullPrecision),
        };
        Console.WriteLine($"TinyTransformer (width 128, depth 4, seed {seed}) on {device.type}: RTN, relative output error vs full precision");
        Console.WriteLine($"{"setting",-10} {"layers",6} {"weight MB",10} {"rel. output error",18} {"mean layer err (W only)",24}");
        foreach (var (name, weights, activations) in settings)
        {
            var result = new QuantizationBuilder()
                .ForModel(model)
                .Weights(weights)
                .Activations(activations)
                .Quantizer(new RtnQuantizer())
                .CalibrationData(calibration)
                .WithLogger(log)
                .WithProgress(new ConsoleProgressBar(name))
                .Build()
                .Apply();
            using var output = Forward(model, test);
            double error = RelativeError(output, reference);
            double meanLayer = result.Layers.Average(l => l.OutputRelativeError ?? double.NaN);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-10} {result.Layers.Count,6} {result.QuantizedWeightBytes / 1e6,10:F3} {error,18:P3} {meanLayer,24:P3}"));
            result.Restore();
        }
        using var restored = Forward(model, test);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"after Restore(): error vs full precision {RelativeError(restored, reference):E2} (float weights: {ModelSurgery.FindLinears(model).Sum(l => l.Layer.weight.numel() * 4) / 1e6:F3} MB)"));
        foreach (var t in calibration) t.Dispose();
        return 0;
    }

    private static Tensor Forward(TinyTransformer model, Tensor x)
    {
        using var noGrad = torch.no_grad();
        return model.call(x);
    }

    private static double RelativeError(Tensor output, Tensor reference)
    {
        using var scope = torch.NewDisposeScope();
        return (output - reference).norm().item<float>() / reference.norm().item<float>();
    }
}
