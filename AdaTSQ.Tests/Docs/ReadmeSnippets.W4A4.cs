// snippet: w4a4
using AdaTSQ.Methods.QuaRot;
using AdaTSQ.Methods.SvdQuant;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void QuantizeToW4A4WithPerGroupActivationsSvdQuantAndQuaRot()
    {
        using var model = new AdaTSQ.Models.TinyTransformer(width: 64, depth: 2, seed: 5);
        model.eval();
        var batches = Enumerable.Range(0, 3).Select(i => TestTensors.Randn(200 + i, 2, 8, 64)).ToList();
        var cancellationToken = CancellationToken.None;

        // snippet: w4a4
        // SVDQuant: per-layer smoothing, a rank-32 full-precision branch, GPTQ on the 4-bit residual.
        var svdquant = new QuantizationBuilder()
            .ForModel(model)
            .ExcludeLayers("head")
            .Weights(bits: 4, groupSize: 64)                           // int4, one scale per 64 inputs
            .Activations(QuantSpec.Activation(bits: 4, groupSize: 64)) // int4, one scale per token and 64 inputs
            .CalibrationData(batches)
            .UseSvdQuant(new SvdQuantOptions { Rank = 32 })
            .UseHessianOptimization()
            .Build()
            .Apply(cancellationToken);
        Console.WriteLine(svdquant.FormatTable());
        svdquant.Restore();

        // QuaRot: a randomized Hadamard rotation of each quantized layer's input, then GPTQ.
        var quarot = new QuantizationBuilder()
            .ForModel(model)
            .ExcludeLayers("head")
            .Weights(bits: 4, groupSize: 64)
            .Activations(QuantSpec.Activation(bits: 4, groupSize: 64))
            .CalibrationData(batches)
            .RotateInputs(new QuaRotOptions { Seed = 0 })
            .UseHessianOptimization()
            .Build()
            .Apply(cancellationToken);
        quarot.Restore();
        // end snippet

        Assert.That(svdquant.Layers, Has.Count.EqualTo(8));
        Assert.That(svdquant.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True, svdquant.FormatTable());
        Assert.That(quarot.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True, quarot.FormatTable());
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
        foreach (var b in batches) b.Dispose();
    }
}
