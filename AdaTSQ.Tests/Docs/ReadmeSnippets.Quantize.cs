// snippet: quantize
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Pipeline;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void QuantizeAnyModel()
    {
        using var model = new AdaTSQ.Models.TinyTransformer(width: 64, depth: 2, seed: 3);
        model.eval();
        var batches = Enumerable.Range(0, 3).Select(i => TestTensors.Randn(100 + i, 2, 8, 64)).ToList();
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var stages = new List<string>();
        var progress = new SyncProgress<AdaTSQ.Abstractions.QuantizationProgress>(p => stages.Add(p.Stage));
        var cancellationToken = CancellationToken.None;

        // snippet: quantize
        var result = new QuantizationBuilder()
            .ForModel(model)                       // any TorchSharp module tree with Linear layers
            .ExcludeLayers("head")                 // glob patterns over dotted layer names
            .Weights(bits: 4, groupSize: 64)       // per-group symmetric int4
            .Activations(bits: 8)                  // dynamic per-token int8
            .Quantizer(new RtnQuantizer())         // the default; .UseHessianOptimization() plugs in GPTQ
            .CalibrationData(batches)              // optional for RTN: enables per-layer output-error reports
            .WithLogger(logger)
            .WithProgress(progress)                // IProgress<QuantizationProgress>
            .Build()                               // validates everything at once
            .Apply(cancellationToken);             // swaps in QuantLinear, calibrates, quantizes (in memory)

        Console.WriteLine(result.FormatTable());   // per-layer weight and output error, bytes
        result.Restore();                          // the original float layers back
        // end snippet

        Assert.That(result.Layers.Select(l => l.Name).ToList(), Has.Count.EqualTo(8).And.None.EqualTo("head"));
        Assert.That(result.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True, result.FormatTable());
        Assert.That(stages, Does.Contain("calibrate").And.Contain("quantize"));
        Assert.That(AdaTSQ.Quantization.ModelSurgery.FindQuantLinears(model), Is.Empty);
        foreach (var b in batches) b.Dispose();
    }
}
