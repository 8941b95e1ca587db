using AdaTSQ.Methods.SvdQuant;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.QuaRot;
using AdaTSQ.Models;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.QuaRot;

/// <summary>QuaRot through the layer and the builder: exact in float arithmetic, better W4A4 with outliers, composable with GPTQ and SmoothQuant.</summary>
public class QuaRotTransformTests
{
    /// <summary>Inputs with three channels 50× larger than the others (a few outlier channels, as DiT activations have).</summary>
    private static Tensor OutlierInputs(long seed, long rows, long features)
    {
        var x = TestTensors.Randn(seed, rows, features);
        using (torch.no_grad())
            foreach (long c in new long[] { 3, 50, 90 }) x[.., c].mul_(50);
        return x;
    }

    [Test]
    public void TheRotatedWeightTimesTheRotatedInputIsTheLayersProduct()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(4);
        var linear = nn.Linear(192, 24);
        using var layer = new QuantLinear("fc", linear);
        var x = OutlierInputs(5, 7, 192);
        var expected = layer.call(x).detach().clone();
        layer.SetInputSmoothing(torch.linspace(0.5, 4, 192));
        using (var rotation = HadamardRotation.Create(192, seed: 1)) layer.SetInputRotation(rotation);
        Assert.That(layer.InputRotation!.Description, Does.Contain("12⊗16"));
        // Full precision ignores the rotation.
        Assert.That(TestTensors.Identical(layer.call(x), expected), Is.True);
        // W·diag(s)·Rᵀ times (x / s)·Rᵀ is x·Wᵀ.
        var w = layer.SmoothedWeight();
        var y = nn.functional.linear(layer.InputRotation.Rotate(x / layer.InputSmoothing!), w, layer.Bias);
        Assert.That(TestTensors.RelativeError(y, expected), Is.LessThan(1e-5));
        // A quantized call with float weights (A8) multiplies with that weight.
        layer.DefaultConfig = new LayerQuantConfig(QuantSpec.FullPrecision, QuantSpec.Activation(8));
        Assert.That(TestTensors.RelativeError(layer.call(x), expected), Is.LessThan(0.02));
    }

    [Test]
    public void RotationsAreSetBeforeVersionsAndAfterSmoothing()
    {
        using var scope = torch.NewDisposeScope();
        var linear = nn.Linear(64, 8);
        using var layer = new QuantLinear("fc", linear);
        using var wrongSize = HadamardRotation.Create(32);
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetInputRotation(wrongSize))!.Message, Does.Contain("32").And.Contain("64"));
        using var rotation = HadamardRotation.Create(64);
        layer.SetInputRotation(rotation);
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetInputSmoothing(torch.ones(64)))!.Message, Does.Contain("before the input rotation"));
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, QuantSpec.Weight(8)));
        Assert.Throws<LayerQuantizationException>(() => layer.SetInputRotation(null));
        layer.ClearWeightVersions();
        layer.SetInputRotation(null);
        Assert.That(layer.InputRotation, Is.Null);
    }

    [Test]
    public void AModelsOutputIsUnchangedByRotationInFloatArithmetic()
    {
        using var model = new TinyTransformer(width: 48, depth: 2, heads: 4, seed: 3);
        model.eval();
        using var x = TestTensors.Randn(8, 2, 6, 48);
        using var reference = model.call(x).detach().clone();
        var result = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData([x]).RotateInputs().Build().Apply();
        var layers = ModelSurgery.FindQuantLinears(model);
        Assert.That(layers.All(l => l.InputRotation is not null), Is.True);
        // Every layer, on the model's own activations: the rotated float product equals the layer's product.
        var checker = new ExactnessChecker();
        foreach (var layer in layers)
        {
            layer.Policy = null; // the run's policy: W8A8
            layer.DefaultConfig = LayerQuantConfig.FullPrecision;
            layer.Observer = checker;
        }
        using (var y = model.call(x))
            Assert.That(TestTensors.RelativeError(y, reference), Is.LessThan(1e-6), "full-precision calls ignore the rotation");
        Assert.That(checker.Checked, Is.EqualTo(layers.Count));
        Assert.That(checker.WorstError, Is.LessThan(1e-5), checker.Worst);
        foreach (var layer in layers) layer.Observer = null;
        result.Restore();
        using (var y = model.call(x))
            Assert.That(TestTensors.RelativeError(y, reference), Is.LessThan(1e-6), "restored");
    }

    private sealed class ExactnessChecker : ILayerInputObserver
    {
        public int Checked { get; private set; }
        public double WorstError { get; private set; }
        public string Worst { get; private set; } = "";

        public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var q = (QuantLinear)layer;
            var expected = nn.functional.linear(input, q.Weight, q.Bias);
            var rotated = nn.functional.linear(q.InputRotation!.Rotate(input), q.SmoothedWeight(), q.Bias);
            double e = TestTensors.RelativeError(rotated, expected);
            Checked++;
            if (e >= WorstError) (WorstError, Worst) = (e, $"{q.LayerName}: {e:E2}");
        }
    }

    private static double W4A4Error(QuaRotOptions? rotate, bool smooth = false, bool gptq = false, int weightBits = 4)
    {
        torch.manual_seed(1);
        using var model = nn.Sequential(("fc", nn.Linear(192, 64)));
        using var x = OutlierInputs(2, 256, 192);
        using var reference = ((nn.Module<Tensor, Tensor>)model).call(x).detach().clone();
        var builder = new QuantizationBuilder().ForModel(model).Weights(weightBits).Activations(4).CalibrationData([x]);
        if (smooth) builder.SmoothActivations(0.5);
        if (rotate is not null) builder.RotateInputs(rotate);
        if (gptq) builder.UseHessianOptimization();
        var result = builder.Build().Apply();
        using var y = ((nn.Module<Tensor, Tensor>)model).call(x);
        double e = TestTensors.RelativeError(y, reference);
        Assert.That(ModelSurgery.FindQuantLinears(model).Single().InputRotation is not null, Is.EqualTo(rotate is not null));
        result.Restore();
        return e;
    }

    [Test]
    public void RotationLowersTheW4A4ErrorOnOutlierHeavyInputs()
    {
        double plain = W4A4Error(null);
        double kronecker = W4A4Error(new QuaRotOptions());
        double block = W4A4Error(new QuaRotOptions { Construction = HadamardConstruction.BlockDiagonal, BlockSize = 64 });
        double noSigns = W4A4Error(new QuaRotOptions { RandomSigns = false });
        double smoothed = W4A4Error(null, smooth: true);
        double both = W4A4Error(new QuaRotOptions(), smooth: true);
        double gptq = W4A4Error(new QuaRotOptions(), gptq: true);
        double plainA4 = W4A4Error(null, weightBits: 8), rotatedA4 = W4A4Error(new QuaRotOptions(), weightBits: 8);
        TestContext.Out.WriteLine($"W4A4 relative output error, 3 channels ×50, K = 192: none {plain:P1}, Kronecker {kronecker:P1}, block-64 {block:P1}, no signs {noSigns:P1}, SmoothQuant {smoothed:P1}, SmoothQuant+rotation {both:P1}, rotation+GPTQ {gptq:P1}; W8A4: none {plainA4:P1}, Kronecker {rotatedA4:P1}");
        Assert.That(kronecker, Is.LessThan(plain));
        Assert.That(block, Is.LessThan(plain));
        Assert.That(both, Is.LessThan(smoothed));
        Assert.That(gptq, Is.LessThan(kronecker));
        Assert.That(rotatedA4, Is.LessThan(0.5 * plainA4), "the activation error alone (8-bit weights)");
    }

    /// <summary>Records the weight and Hessian a quantizer is given (RTN underneath).</summary>
    private sealed class SpyQuantizer : IQuantizer
    {
        public Dictionary<string, (Tensor Weight, Tensor Hessian)> Seen { get; } = [];
        public string Name => "spy";
        public CalibrationRequirements Requirements => CalibrationRequirements.SecondMoments;
        public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default)
        {
            Seen[layerName] = (weight.detach().clone().DetachFromDisposeScope(), statistics!.SecondMoment!.clone().DetachFromDisposeScope());
            return QuantizedTensor.Quantize(weight, spec);
        }
    }

    [Test]
    public void TheQuantizerSeesTheRotatedWeightAndTheRotatedHessian()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(6);
        using var model = nn.Sequential(("fc", nn.Linear(96, 16)));
        var x = OutlierInputs(7, 40, 96);
        var spy = new SpyQuantizer();
        var result = new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([x])
            .Quantizer(spy).RotateInputs(new QuaRotOptions { Seed = 9 }).Build().Apply();
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        var (weight, hessian) = spy.Seen["fc"];
        var rotatedX = layer.InputRotation!.Rotate(x).to(ScalarType.Float64);
        Assert.That(TestTensors.RelativeError(hessian, rotatedX.t().mm(rotatedX)), Is.LessThan(1e-6), "Σ (Rx)(Rx)ᵀ (float32 rotated inputs vs float64 R·H·Rᵀ)");
        Assert.That(TestTensors.RelativeError(weight, layer.SmoothedWeight()), Is.LessThan(1e-7), "W·Rᵀ");
        using var r = HadamardRotation.Create(96, seed: 9);
        Assert.That(TestTensors.RelativeError(weight, r.Rotate(layer.Weight.detach())), Is.LessThan(1e-7));
        foreach (var (w, h) in spy.Seen.Values) { w.Dispose(); h.Dispose(); }
        result.Restore();
    }

    [Test]
    public void GptqWithRotationRunsThroughTheBuilderOnATransformer()
    {
        using var model = new TinyTransformer(width: 48, depth: 1, heads: 4, seed: 11);
        model.eval();
        using var x = TestTensors.Randn(12, 4, 8, 48);
        using var reference = model.call(x).detach().clone();
        double Error(bool gptq)
        {
            var builder = new QuantizationBuilder().ForModel(model).Weights(4, groupSize: 0).Activations(8).CalibrationData([x]).RotateInputs();
            if (gptq) builder.UseHessianOptimization(new GptqOptions { BlockSize = 32 });
            var result = builder.Build().Apply();
            Assert.That(result.Layers.All(l => l.OutputRelativeError is not null), Is.True);
            Assert.That(ModelSurgery.FindQuantLinears(model).All(l => l.InputRotation is not null), Is.True);
            using var y = model.call(x);
            double e = TestTensors.RelativeError(y, reference);
            result.Restore();
            return e;
        }
        double rtn = Error(false), gptq = Error(true);
        TestContext.Out.WriteLine($"TinyTransformer W4A8 with rotation: RTN {rtn:P2}, GPTQ {gptq:P2}");
        Assert.That(gptq, Is.LessThan(rtn));
    }

    [Test]
    public void LayersAreChosenByActivationQuantizationAndPatterns()
    {
        using var model = new TinyTransformer(width: 48, depth: 1, heads: 4, seed: 2);
        using var x = TestTensors.Randn(1, 2, 4, 48);
        var weightOnly = new QuantizationBuilder().ForModel(model).Weights(8).CalibrationData([x]).RotateInputs().Build().Apply();
        Assert.That(ModelSurgery.FindQuantLinears(model).All(l => l.InputRotation is null), Is.True, "weight-only layers are not rotated by default");
        weightOnly.Restore();
        var some = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData([x])
            .RotateInputs(new QuaRotOptions { Layers = ["blocks.*"], ExcludeLayers = ["*.fc2"] }).Build().Apply();
        var rotated = ModelSurgery.FindQuantLinears(model).Where(l => l.InputRotation is not null).Select(l => l.LayerName);
        Assert.That(rotated, Is.EquivalentTo(new[] { "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1" }));
        some.Restore();
    }

    [Test]
    public void BadOptionsAndUnrotatableLayersAreReported()
    {
        var builder = new QuantizationBuilder();
        var e = Assert.Throws<QuantizationConfigurationException>(() => builder.RotateInputs(new QuaRotOptions
        {
            Construction = HadamardConstruction.BlockDiagonal, BlockSize = 48, Layers = [""],
        }));
        Assert.That(e!.Message, Does.Contain("block size 48").And.Contain("pattern"));
        Assert.Throws<QuantizationConfigurationException>(() => builder.RotateInputs(new QuaRotOptions { Construction = (HadamardConstruction)9 }));

        torch.manual_seed(1);
        using var model = nn.Sequential(("odd", nn.Linear(26, 4)));
        using var x = TestTensors.Randn(2, 3, 26);
        var ex = Assert.Throws<LayerQuantizationException>(() => new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData([x]).RotateInputs().Build().Apply());
        Assert.That(ex!.Message, Does.Contain("odd").And.Contain("26"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "a failed run puts the original layers back");
        var block = Assert.Throws<LayerQuantizationException>(() => new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData([x])
            .RotateInputs(new QuaRotOptions { Construction = HadamardConstruction.BlockDiagonal, BlockSize = 8 }).Build().Apply());
        Assert.That(block!.Message, Does.Contain("block size 8"));
    }

    [Test]
    public void RotatedLayersRunOnTheKernelsWithTheRotationInsideTheCall()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(12);
        var linear = nn.Linear(192, 16);
        using var layer = new QuantLinear("fc", linear);
        var x = OutlierInputs(13, 5, 192);
        using (var rotation = HadamardRotation.Create(192)) layer.SetInputRotation(rotation);
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, QuantSpec.Weight(8)));
        layer.DefaultConfig = LayerQuantConfig.Create(8, 8);
        var simulated = layer.call(x).clone();
        var ops = new FusedLinearOps { LayerNorm = true, Activation = FusedActivation.GeluTanh };
        var composedSimulated = layer.ForwardFused(x, ops);
        using var kernel = new IntegerLinearKernel { Strict = true };
        layer.IntegerKernel = kernel;
        var integer = layer.call(x);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1));
        Assert.That(TestTensors.RelativeError(integer, simulated), Is.LessThan(1e-5));
        Assert.That(TestTensors.RelativeError(integer, nn.functional.linear(x, linear.weight!, linear.bias)), Is.LessThan(0.05), "the rotation is undone: the output is the layer's");
        // The fast Walsh–Hadamard transform runs in the native prologue after the LayerNorm: one fused integer call.
        var fused = layer.ForwardFused(x, ops);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2));
        Assert.That(TestTensors.RelativeError(fused, composedSimulated), Is.LessThan(1e-4));
    }

    [Test]
    public void SmoothingAfterRotationIsRefused()
    {
        using var model = nn.Sequential(("fc", nn.Linear(64, 8)));
        using var x = TestTensors.Randn(3, 8, 64);
        // The plan is refused when it is built, before any layer changes.
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData([x])
            .RotateInputs().SmoothActivations().Build());
        Assert.That(e!.Message, Does.Contain("SmoothQuant smooths the layers' inputs but comes after QuaRot"));
        Assert.That(model.named_modules().Any(m => m.module is QuantLinear), Is.False);
        // A layer refuses it too, for code that sets the factors directly.
        using var layer = new QuantLinear("fc", nn.Linear(64, 8));
        using var rotation = HadamardRotation.Create(64);
        layer.SetInputRotation(rotation);
        using var s = torch.ones(64);
        var direct = Assert.Throws<LayerQuantizationException>(() => layer.SetInputSmoothing(s));
        Assert.That(direct!.Message, Does.Contain("SmoothActivations before RotateInputs"));
    }

    [Test]
    public void ALowRankBranchAndARotationAreRefusedTogether()
    {
        using var model = nn.Sequential(("fc", nn.Linear(64, 8)));
        using var x = TestTensors.Randn(3, 8, 64);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([x])
            .UseSvdQuant(new SvdQuantOptions { Rank = 4 }).RotateInputs().Build());
        Assert.That(e!.Message, Does.Contain("SvdQuant's low-rank branch and QuaRot's rotation cannot be combined"));
    }
}
