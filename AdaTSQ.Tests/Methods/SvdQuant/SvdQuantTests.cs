using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.SmoothQuant;
using AdaTSQ.Methods.SvdQuant;
using AdaTSQ.Models;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.SvdQuant;

public class SvdQuantTests
{
    private const int In = 64, Out = 48;

    /// <summary>A rank small against the layer (as 32 is against DiT-XL's 1152-wide layers), above its 4 large singular values.</summary>
    private static readonly SvdQuantOptions SmallRank = new() { Rank = 8 };

    /// <summary>Inputs whose channels 3, 17 and 40 are 50× larger than the rest, as in DiT activations.</summary>
    private static Tensor OutlierInputs(long seed, long rows = 256)
    {
        var x = TestTensors.Randn(seed, rows, In);
        using (torch.no_grad())
            foreach (int c in new[] { 3, 17, 40 }) x[.., c].mul_(50);
        return x;
    }

    /// <summary>A layer whose weight has a few large singular values (a rank-4 part 10× the Gaussian rest).</summary>
    private static TorchSharp.Modules.Sequential OutlierLayer()
    {
        var model = nn.Sequential(("fc", nn.Linear(In, Out)));
        using var noGrad = torch.no_grad();
        using var big = TestTensors.Randn(31, Out, 4).mm(TestTensors.Randn(32, 4, In)) * 0.5;
        using var rest = TestTensors.Randn(33, Out, In) * 0.1;
        ((TorchSharp.Modules.Linear)model[0]).weight!.copy_(big + rest);
        return model;
    }

    private static LayerStatistics Statistics(Tensor x)
    {
        var stats = new LayerStatistics("fc", In, collectSecondMoment: true);
        stats.Add(x, null, 1.0);
        return stats;
    }

    /// <summary>W4A4 relative output error on held-out inputs of the outlier layer quantized by <paramref name="configure"/>.</summary>
    private static double W4A4Error(Func<QuantizationBuilder, QuantizationBuilder> configure, Action<QuantizationResult>? inspect = null)
    {
        using var model = OutlierLayer();
        using var calibration = OutlierInputs(1);
        using var test = OutlierInputs(2, 128);
        using var reference = model.call(test).detach().clone();
        var result = configure(new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([calibration])).Build().Apply();
        using var y = model.call(test);
        inspect?.Invoke(result);
        result.Restore();
        return TestTensors.RelativeError(y, reference);
    }

    [Test]
    public void OnAnOutlierHeavyLayerW4A4IsMoreAccurateThanRtnAndThanSmoothQuantAlone()
    {
        double rtn = W4A4Error(b => b);
        double smooth = W4A4Error(b => b.SmoothActivations(0.5));
        double svd = W4A4Error(b => b.UseSvdQuant(SmallRank));
        TestContext.Out.WriteLine($"W4A4 relative output error: RTN {rtn:P2}, SmoothQuant α=0.5 {smooth:P2}, SVDQuant r=8 {svd:P2}");
        Assert.That(svd, Is.LessThan(rtn));
        Assert.That(svd, Is.LessThan(smooth));
    }

    [Test]
    public void GptqQuantizesTheResidualThroughTheBuilder()
    {
        double gptq = W4A4Error(b => b.UseHessianOptimization());
        double both = W4A4Error(b => b.UseHessianOptimization().UseSvdQuant(SmallRank), result =>
        {
            Assert.That(result.QuantizerName, Is.EqualTo("GPTQ"));
            var layer = ModelSurgery.FindQuantLinears(result.Model).Single();
            Assert.That(layer.LowRank!.Rank, Is.EqualTo(8));
            // The version is GPTQ's of the residual R = W·diag(λ) − L1·L2, and the memory counts the branch.
            using var r = layer.SmoothedWeight();
            using var q = layer.GetWeightVersion(QuantSpec.Weight(4)).Dequantize();
            Assert.That(TestTensors.RelativeError(q, r), Is.LessThan(0.3));
            Assert.That(result.QuantizedWeightBytes, Is.EqualTo(Out * In / 2 + Out * 4 + (Out + In) * 8 * 4));
        });
        TestContext.Out.WriteLine($"W4A4 relative output error: GPTQ {gptq:P2}, GPTQ + SVDQuant {both:P2}");
        Assert.That(both, Is.LessThan(gptq));
    }

    [Test]
    public void AtFullPrecisionTheModelOutputIsUnchanged()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        model.eval();
        using var x = TestTensors.Randn(3, 2, 4, 32);
        using var reference = model.call(x).detach().clone();
        var result = new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([x]).UseSvdQuant(new SvdQuantOptions { Rank = 8 }).Build().Apply();
        var layers = ModelSurgery.FindQuantLinears(model).ToList();
        Assert.That(layers.All(l => l.LowRank is not null), Is.True);
        foreach (var l in layers) l.Policy = null;   // every layer at its default: full precision
        using var y = model.call(x);
        Assert.That(TestTensors.RelativeError(y, reference), Is.LessThan(1e-5));
        result.Restore();
    }

    [Test]
    public void RankZeroIsSmoothingOnly()
    {
        using var model = OutlierLayer();
        using var x = OutlierInputs(1);
        using var stats = Statistics(x);
        var options = new SvdQuantOptions { Rank = 0 };
        var config = LayerQuantConfig.Create(4, 4);
        using var layer = new QuantLinear("fc", (TorchSharp.Modules.Linear)model[0]);
        using var smoothed = new SvdQuantTransform(options).Apply(layer, [config], stats);
        Assert.That(layer.LowRank, Is.Null);
        var choice = MigrationStrengthSearch.Run("fc", layer.Weight, stats, config.Weight, config.Activation, options);
        Assert.That(choice.Alpha, Is.Not.Null);
        using var factors = SmoothQuantTransform.Factors(layer.Weight, stats.ChannelAbsMax!, choice.Alpha!.Value);
        Assert.That(TestTensors.Identical(layer.InputSmoothing!, factors), Is.True, "the factors SmoothQuant makes for the chosen α");
        using var w = layer.SmoothedWeight();
        using var expected = layer.Weight.detach() * factors.unsqueeze(0);
        Assert.That(TestTensors.Identical(w, expected), Is.True);
    }

    [Test]
    public void TheAlphaSearchSmoothsOutliersIsDeterministicAndPicksTheLeastError()
    {
        using var model = OutlierLayer();
        using var x = OutlierInputs(1);
        using var stats = Statistics(x);
        var weight = ((TorchSharp.Modules.Linear)model[0]).weight!;
        var options = new SvdQuantOptions();
        var a4 = QuantSpec.Activation(4);
        var first = MigrationStrengthSearch.Run("fc", weight, stats, QuantSpec.Weight(4), a4, options);
        var again = MigrationStrengthSearch.Run("fc", weight, stats, QuantSpec.Weight(4), a4, options);
        TestContext.Out.WriteLine(string.Join(", ", first.Candidates.Select(c => $"α={c.Alpha?.ToString("F1") ?? "none"}: {c.Error:G3}")));
        Assert.That(again, Is.EqualTo(first).Using<MigrationStrengthChoice>((p, q) => p.Alpha == q.Alpha && p.Candidates.SequenceEqual(q.Candidates)));
        Assert.That(first.Candidates, Has.Count.EqualTo(12));
        Assert.That(first.Candidates.Min(c => c.Error), Is.EqualTo(first.Candidates.Single(c => c.Alpha == first.Alpha).Error));
        Assert.That(first.Alpha, Is.GreaterThanOrEqualTo(0.3), "with 50× input outliers and 4-bit activations, smoothing must move a good part of them");
        // Weight-only 4-bit on inputs without outliers: no reason to push activation range into the weight.
        using var plain = TestTensors.Randn(5, 256, In);
        using var plainStats = Statistics(plain);
        var weightOnly = MigrationStrengthSearch.Run("fc", weight, plainStats, QuantSpec.Weight(4), QuantSpec.FullPrecision, options);
        Assert.That(weightOnly.Alpha ?? 0, Is.LessThanOrEqualTo(0.5), string.Join(", ", weightOnly.Candidates));
    }

    [Test]
    public void BadOptionsAndCombinationsGiveClearErrors()
    {
        using var model = OutlierLayer();
        using var x = OutlierInputs(1);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().UseSvdQuant(new SvdQuantOptions { Rank = -1, Alphas = [] }));
        Assert.That(e!.Problems, Has.Count.EqualTo(2));
        Assert.That(e.Message, Does.Contain("rank -1").And.Contain("α grid is empty"));
        Assert.That(new SvdQuantOptions { Alphas = [0.5, 1.5] }.FindProblems().Single(), Does.Contain("1.5"));
        foreach (var order in new Func<QuantizationBuilder, QuantizationBuilder>[] { b => b.SmoothActivations().UseSvdQuant(), b => b.UseSvdQuant().SmoothActivations() })
        {
            var both = Assert.Throws<QuantizationConfigurationException>(() => order(new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([x])).Build());
            Assert.That(both!.Message, Does.Contain("SmoothQuant").And.Contain("SvdQuant").And.Contain("input smoothing"));
        }
        var noData = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(4).UseSvdQuant().Build());
        Assert.That(noData!.Message, Does.Contain("calibration data"));
        var tooHigh = Assert.Throws<LayerQuantizationException>(() => new QuantizationBuilder().ForModel(model).Weights(4).Activations(4).CalibrationData([x])
            .UseSvdQuant(new SvdQuantOptions { Rank = 49 }).Build().Apply());
        Assert.That(tooHigh!.Message, Does.Contain("rank 49 exceeds min(in, out) = 48"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "a failed run puts the original layer back");
    }
}
