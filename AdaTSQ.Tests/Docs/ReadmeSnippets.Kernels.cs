// snippet: kernels
using AdaTSQ.Quantization;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void IntegerKernelsRunAQuantizedDiT()
    {
        using var model = TinyDiT();
        var quantized = new AdaTSQ.Pipeline.QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(8).Activations(8).Build().Apply();
        using var x = TestTensors.Randn(12, 2, 1, 8, 8);
        using var t = TorchSharp.torch.tensor(new float[] { 10, 600 });
        using var y = TorchSharp.torch.tensor(new long[] { 0, 3 });
        using var noGrad = TorchSharp.torch.no_grad();
        using var simulated = model.call(x, t, y);

        // snippet: kernels
        using var kernel = new IntegerLinearKernel();            // packs each quantized weight once
        IntegerLinearKernel.Attach(model, kernel);               // every QuantLinear of the model
        using var output = model.call(x, t, y);                  // W8A8 / W4A8 / W4A4 layers run on int8 GEMMs
        // end snippet

        Assert.That(kernel.IntegerCalls, Is.GreaterThan(0));
        Assert.That(kernel.FallbackCalls, Is.Zero);
        Assert.That(TestTensors.RelativeError(output, simulated), Is.LessThan(0.05), "integer kernels vs fake quantization");
        IntegerLinearKernel.Attach(model, null);
        quantized.Restore();
    }
}
