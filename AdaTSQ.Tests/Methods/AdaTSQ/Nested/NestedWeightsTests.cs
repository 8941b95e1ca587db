using AdaTSQ.Methods.AdaTSQ.Nested;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Models;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using AdaTSQ.Samples.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Nested;

/// <summary>Nested weight codes (issue 16, item 2): narrower widths read from a wider version.</summary>
public class NestedWeightsTests
{
    [Test]
    public void ASliceIsTheRoundedTopBitsOfTheWideCodesWithScaledSteps()
    {
        using var w = TestTensors.Randn(3, 16, 128);
        using var wide = QuantizedTensor.Quantize(w, QuantSpec.Weight(8, 64));
        using var narrow = NestedCodes.Slice(wide, 4);
        Assert.That(narrow.Spec, Is.EqualTo(QuantSpec.Weight(4, 64)));
        Assert.That(narrow.IsPacked, Is.True, "4-bit codes are stored two per byte like any 4-bit version");
        using var c8 = wide.UnpackedCodes().to(ScalarType.Float64);
        using var expected = (c8 / 16).round().clamp(-7, 7);
        using var got = narrow.UnpackedCodes().to(ScalarType.Float64);
        Assert.That(got.equal(expected).all().item<bool>(), Is.True);
        Assert.That(NestedCodes.IsNestedIn(narrow, wide), Is.True);
        using var scales = wide.Parameters.Scale * 16;
        Assert.That(narrow.Parameters.Scale.allclose(scales, rtol: 1e-6, atol: 0), Is.True, "without a weight the steps are s·2^(w−b)");

        using var independent = QuantizedTensor.Quantize(w, QuantSpec.Weight(4, 64));
        Assert.That(NestedCodes.IsNestedIn(independent, wide), Is.False, "an independent 4-bit RTN version is not the slice (its grid is max/7, not 16·max/127)");
    }

    [Test]
    public void RefittedScalesNeverIncreaseAGroupsWeightErrorAndLowerTheTotal()
    {
        using var w = TestTensors.Randn(5, 32, 256);
        using var wide = QuantizedTensor.Quantize(w, QuantSpec.Weight(8, 64));
        foreach (int bits in new[] { 2, 3, 4, 6 })
        {
            using var plain = NestedCodes.Slice(wide, bits);
            using var refit = NestedCodes.Slice(wide, bits, w);
            Assert.That(NestedCodes.IsNestedIn(refit, wide), Is.True, "refitting changes the scales only");
            Assert.That(refit.UnpackedCodes().equal(plain.UnpackedCodes()).all().item<bool>(), Is.True);
            using var ePlain = FakeQuantizer.GroupView((plain.Dequantize() - w).square(), plain.Spec).sum(-1);
            using var eRefit = FakeQuantizer.GroupView((refit.Dequantize() - w).square(), refit.Spec).sum(-1);
            Assert.That((eRefit - ePlain).max().item<float>(), Is.LessThanOrEqualTo(1e-5f), $"W{bits}: a group got worse");
            double total = eRefit.sum().item<float>(), before = ePlain.sum().item<float>();
            Assert.That(total, Is.LessThan(before), $"W{bits}: refit {total:G4} vs slice {before:G4}");
            TestContext.Out.WriteLine($"W{bits} g64 from W8 RTN: weight SSE slice {before:G4}, refit {total:G4}");
        }
    }

    [Test]
    public void BadSlicesAreRefusedWithTheReason()
    {
        using var w = TestTensors.Randn(1, 8, 64);
        using var wide = QuantizedTensor.Quantize(w, QuantSpec.Weight(8));
        using var asym = QuantizedTensor.Quantize(w, QuantSpec.Weight(8, symmetric: false));
        Assert.That(Assert.Throws<ArgumentException>(() => NestedCodes.Slice(asym, 4).Dispose())!.Message, Does.Contain("symmetric"));
        Assert.That(Assert.Throws<ArgumentException>(() => NestedCodes.Slice(wide, 8).Dispose())!.Message, Does.Contain("narrower"));
        Assert.That(Assert.Throws<ArgumentException>(() => NestedCodes.Slice(wide, 1).Dispose())!.Message, Does.Contain("[2, 7]"));
        using var other = TestTensors.Randn(2, 8, 32);
        Assert.That(Assert.Throws<ArgumentException>(() => NestedCodes.Slice(wide, 4, other).Dispose())!.Message, Does.Contain("[8, 32]"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NestedQuantizer(new RtnQuantizer(), parentBits: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new QuantizationBuilder().UseNestedWeights(parentBits: 9));
    }

    [Test]
    public void ThroughTheBuilderGptqsNarrowVersionIsTheSliceOfItsWideVersion()
    {
        using var model = new TinyTransformer(width: 64, depth: 2, seed: 7);
        model.eval();
        var calibration = Enumerable.Range(0, 4).Select(i => TestTensors.Randn(50 + i, 4, 16, 64)).ToList();
        try
        {
            Dictionary<string, QuantizedTensor> Versions(int bits, bool nested, out double error, out string quantizer)
            {
                var builder = new QuantizationBuilder().ForModel(model).Weights(bits).CalibrationData(calibration);
                if (nested) builder.UseNestedWeights(8);       // before the quantizer: the decorator wraps whichever is set at Build
                builder.UseHessianOptimization();
                var result = builder.Build().Apply();
                error = result.Layers.Average(l => l.OutputRelativeError!.Value);
                quantizer = result.QuantizerName;
                var copies = model.modules().OfType<QuantLinear>().ToDictionary(l => l.LayerName, l => l.GetWeightVersion(QuantSpec.Weight(bits)).To(CPU));
                result.Restore();
                return copies;
            }
            var wide = Versions(8, nested: false, out _, out _);
            var nested = Versions(4, nested: true, out double nestedError, out string name);
            var independent = Versions(4, nested: false, out double independentError, out _);
            Assert.That(name, Is.EqualTo("GPTQ, nested in W8"));
            Assert.That(nested.Keys, Is.EquivalentTo(wide.Keys));
            foreach (var (layer, q) in nested)
            {
                Assert.That(NestedCodes.IsNestedIn(q, wide[layer]), Is.True, layer);
                Assert.That(NestedCodes.IsNestedIn(independent[layer], wide[layer]), Is.False, $"{layer}: the control is not nested");
            }
            TestContext.Out.WriteLine($"W4 per-channel, mean layer output error: GPTQ independent {independentError:P2}, GPTQ nested in W8 {nestedError:P2}");
            Assert.That(nestedError, Is.GreaterThan(0).And.LessThan(1));
            foreach (var q in wide.Values.Concat(nested.Values).Concat(independent.Values)) q.Dispose();
        }
        finally
        {
            foreach (var t in calibration) t.Dispose();
        }
    }

    [Test]
    public void AtOrAboveTheParentWidthTheInnerQuantizerDecides()
    {
        using var w = TestTensors.Randn(9, 16, 64);
        using var direct = new RtnQuantizer().Quantize("fc", w, QuantSpec.Weight(8), null);
        using var viaNested = new NestedQuantizer(new RtnQuantizer(), 8).Quantize("fc", w, QuantSpec.Weight(8), null);
        Assert.That(viaNested.Codes.equal(direct.Codes).all().item<bool>(), Is.True);
        Assert.That(viaNested.Parameters.Scale.equal(direct.Parameters.Scale).all().item<bool>(), Is.True);
        Assert.Throws<LayerQuantizationException>(() => new NestedQuantizer(new RtnQuantizer(), 8).Quantize("fc", w, QuantSpec.Weight(4, symmetric: false), null).Dispose());
    }

    [Test]
    public void QuantizerDecoratorsWrapTheFinalQuantizerInOrderAndReplaceByName()
    {
        using var model = new TinyTransformer(width: 64, depth: 1, seed: 3);
        string NameOf(QuantizationBuilder b)
        {
            var result = b.Build().Apply();
            string name = result.QuantizerName;
            result.Restore();
            return name;
        }
        Assert.That(NameOf(new QuantizationBuilder().ForModel(model).Weights(4).UseNestedWeights(8).UseNestedWeights(6)), Is.EqualTo("RTN, nested in W6"),
            "the second call replaces the first (same decorator name), it does not nest twice");
        Assert.That(NameOf(new QuantizationBuilder().ForModel(model).Weights(4).UseNestedWeights(8)
            .DecorateQuantizer("outer", q => new NestedQuantizer(q, 7))), Is.EqualTo("RTN, nested in W8, nested in W7"), "later decorators wrap earlier ones");
        Assert.That(NameOf(new QuantizationBuilder().ForModel(model).Weights(4).UseNestedWeights(8).Quantizer(new RtnQuantizer())), Is.EqualTo("RTN, nested in W8"),
            "a quantizer set after the decorator is still wrapped");
    }

    [Test]
    public void ANestedVersionKeepsOnlyItsScalesAndComputesExactlyWhatTheStoredOneDid()
    {
        torch.manual_seed(21);
        using var layer = new QuantLinear("fc", nn.Linear(128, 48));
        var w8 = QuantSpec.Weight(8, 64);
        var w4 = QuantSpec.Weight(4, 64);
        var a8 = QuantSpec.Activation(8);
        using var weight = layer.SmoothedWeight();
        layer.SetWeightVersion(QuantizedTensor.Quantize(weight, w8));
        using (var wide = QuantizedTensor.Quantize(weight, w8))
            layer.SetWeightVersion(NestedCodes.Slice(wide, 4, weight));
        using var x = TestTensors.Randn(4, 10, 128);
        layer.DefaultConfig = new LayerQuantConfig(w4, a8);
        using var before = layer.call(x).detach().clone();
        using var codesBefore = layer.GetWeightVersion(w4).UnpackedCodes().clone();
        long bytesBefore = layer.QuantizedWeightBytes, w4Bytes = layer.WeightVersionBytes(w4);

        Assert.That(layer.NestWeightVersions(), Is.EqualTo(1));
        Assert.That(layer.NestedParentOf(w4), Is.EqualTo(w8));
        Assert.That(layer.NestedParentOf(w8), Is.Null);
        long scaleBytes = 48 * 2 * sizeof(float);
        Assert.That(layer.WeightVersionBytes(w4), Is.EqualTo(scaleBytes), "a nested version stores one float per group");
        Assert.That(layer.QuantizedWeightBytes, Is.EqualTo(bytesBefore - w4Bytes + scaleBytes));
        layer.ReleaseDequantizedWeights();
        using (var after = layer.call(x))
            Assert.That(after.equal(before).all().item<bool>(), Is.True, "fake-quantized call, bit for bit");
        Assert.That(layer.GetWeightVersion(w4).UnpackedCodes().equal(codesBefore).all().item<bool>(), Is.True);

        // On the integer kernels the nested version is packed per call: the kernel holds no packed form of it.
        using (var kernel = new IntegerLinearKernel())
        {
            layer.IntegerKernel = kernel;
            using var onKernel = layer.call(x);
            Assert.That(kernel.PackedWeightBytes, Is.Zero, "nothing packed and kept for a nested version");
            Assert.That(kernel.IntegerCalls, Is.EqualTo(1));
            layer.DefaultConfig = new LayerQuantConfig(w8, a8);
            using var wideCall = layer.call(x);
            Assert.That(kernel.PackedWeightBytes, Is.GreaterThan(0), "a stored version is packed once and kept");
            layer.DefaultConfig = new LayerQuantConfig(w4, a8);
            using var again = layer.call(x);
            Assert.That(again.equal(onKernel).all().item<bool>(), Is.True, "the same integer result on every call");
            Assert.That((again - before).abs().max().item<float>(), Is.LessThan(1e-3f), "integer and fake-quantized calls agree");
            layer.IntegerKernel = null;
        }

        // Removing the parent gives the nested version its codes back.
        Assert.That(layer.RemoveWeightVersion(w8), Is.True);
        Assert.That(layer.NestedParentOf(w4), Is.Null);
        Assert.That(layer.WeightVersionBytes(w4), Is.EqualTo(w4Bytes));
        using (var stored = layer.call(x))
            Assert.That(stored.equal(before).all().item<bool>(), Is.True);
    }

    [Test]
    public void IndependentVersionsAreNotNestedAndTheBuilderStoresNestedOnesOnce()
    {
        using var model = new TinyTransformer(width: 64, depth: 2, seed: 5);
        model.eval();
        var policy = global::AdaTSQ.Policies.TimeGroupedTimestepPolicy.Even(10,
            [new global::AdaTSQ.Policies.StaticTimestepPolicy(new LayerQuantConfig(QuantSpec.Weight(8), QuantSpec.FullPrecision)),
             new global::AdaTSQ.Policies.StaticTimestepPolicy(new LayerQuantConfig(QuantSpec.Weight(4), QuantSpec.FullPrecision))]);
        long Bytes(bool nested, out int nestedLayers)
        {
            var builder = new QuantizationBuilder().ForModel(model).Policy(policy);
            if (nested) builder.UseNestedWeights(8);
            var result = builder.Build().Apply();
            long bytes = result.QuantizedWeightBytes;
            nestedLayers = model.modules().OfType<QuantLinear>().Count(l => l.NestedParentOf(QuantSpec.Weight(4)) is not null);
            result.Restore();
            return bytes;
        }
        long independent = Bytes(false, out int none), nestedBytes = Bytes(true, out int all);
        Assert.That(none, Is.Zero, "independent RTN W4 codes are not the top bits of W8's");
        Assert.That(all, Is.GreaterThan(0));
        TestContext.Out.WriteLine($"W8 + W4 per channel, {all} layers: independent {independent} B, nested {nestedBytes} B");
        Assert.That(nestedBytes, Is.LessThan(independent * 0.75), "the W4 codes (a third of the W8 + W4 codes) are no longer stored");
    }

    [Test]
    public void TheSettingStringNamesTheParentWidth()
    {
        Assert.That(SettingCatalog.ParseSetting("gptq-w4a8-nest8").NestedParentBits, Is.EqualTo(8));
        Assert.That(SettingCatalog.ParseSetting("rtn-w3a8-nest").NestedParentBits, Is.EqualTo(8));
        Assert.That(SettingCatalog.ParseSetting("gptqf-w3a8-nest6").NestedParentBits, Is.EqualTo(6));
        Assert.That(SettingCatalog.ParseSetting("gptq-w4a8").NestedParentBits, Is.Null);
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("gptq-w8a8-nest8"))!.Message, Does.Contain("parent width"));
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("qdit-w4a4-nest8"))!.Message, Does.Contain("unknown part"));
    }
}
