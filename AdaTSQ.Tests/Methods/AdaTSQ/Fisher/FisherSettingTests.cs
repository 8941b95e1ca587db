using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Pipeline;
using AdaTSQ.Samples.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

/// <summary>The gptqf setting strings of evaluate: -nlog, -nrank (normalization), -traj (trajectory inputs), with -t and -x0.</summary>
public class FisherSettingTests
{
    [Test]
    public void TheFisherSuffixesParse()
    {
        var plain = SettingCatalog.ParseSetting("gptqf-w4a8");
        Assert.That(plain.FisherNormalization, Is.Null, "the command's normalization (Power by default)");
        Assert.That(plain.Fisher, Is.EqualTo(new FisherVariant(FisherLossSpace.Noise, FisherInputs.QSample)));
        Assert.That(plain.Fisher.Suffix, Is.Empty, "the default estimate keeps its file names (fisher.json)");

        Assert.That(SettingCatalog.ParseSetting("gptqf-w4a8-nlog").FisherNormalization, Is.EqualTo(FisherNormalization.Log));
        Assert.That(SettingCatalog.ParseSetting("gptqf-w4a8-nrank").FisherNormalization, Is.EqualTo(FisherNormalization.Rank));
        var traj = SettingCatalog.ParseSetting("gptqf-w4a8-traj");
        Assert.That(traj.FisherInputs, Is.EqualTo(FisherInputs.Trajectory));
        Assert.That(traj.FisherTemperature, Is.Null, "-traj is not a temperature");
        Assert.That(traj.Fisher.Suffix, Is.EqualTo("-traj"));

        var all = SettingCatalog.ParseSetting("gptqf-w4a4-g64-ag64-svd32-traj-x0-nrank-t4-is");
        Assert.That(all.Fisher, Is.EqualTo(new FisherVariant(FisherLossSpace.CleanImage, FisherInputs.Trajectory)));
        Assert.That(all.Fisher.Suffix, Is.EqualTo("-traj-x0"));
        Assert.That(all.FisherNormalization, Is.EqualTo(FisherNormalization.Rank));
        Assert.That(all.FisherTemperature, Is.EqualTo(4.0));
        Assert.That(all.FisherUse, Is.EqualTo(FisherUse.Sample));
        Assert.That(all.SvdRank, Is.EqualTo(32));
        Assert.That(SettingCatalog.ParseSetting("gptqf-w4a8-x0").Fisher.Suffix, Is.EqualTo("-x0"));
    }

    [TestCase("gptq-w4a8-traj")]
    [TestCase("rtn-w4a8-nlog")]
    [TestCase("gptq-w4a8-nrank")]
    [TestCase("gptqf-w4a8-nsqrt")]
    public void FisherSuffixesBelongToGptqfOnly(string text) =>
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting(text))!.Message, Does.Contain("unknown part"));

    [Test]
    public void TwoNormalizationsAreRefused() =>
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("gptqf-w4a8-nlog-nrank"))!.Message, Does.Contain("one Fisher normalization"));

    [Test]
    public void ASettingOverridesOnlyWhatItSets()
    {
        var shared = new FisherWeighting { Temperature = 2, Floor = 0.2, PerLayer = false };
        Assert.That(SettingCatalog.WeightingOf(SettingCatalog.ParseSetting("gptqf-w4a8"), shared), Is.EqualTo(shared));
        Assert.That(SettingCatalog.WeightingOf(SettingCatalog.ParseSetting("gptqf-w4a8-nlog"), shared), Is.EqualTo(shared with { Normalization = FisherNormalization.Log }));
        Assert.That(SettingCatalog.WeightingOf(SettingCatalog.ParseSetting("gptqf-w4a8-t4-nrank"), shared),
            Is.EqualTo(shared with { Temperature = 4, Normalization = FisherNormalization.Rank }));
    }

    [Test]
    public void ConfigureAsksForTheSettingsEstimateAndWeightsByItsNormalization()
    {
        // Fisher 1, 100, 10⁴ over three steps: Power and Rank give different α, so different Hessians and GPTQ weights.
        var steps = Enumerable.Range(0, 3).Select(k => new TimestepInfo(k, 3, 999 - 333 * k)).ToArray();
        var fisher = new TemporalFisher(steps, ["fc"], new double[,] { { 1 }, { 100 }, { 1e4 } }, 1);
        var inputs = Enumerable.Range(0, 3).Select(k => TestTensors.CorrelatedInputs(24, 16, 10 + k)).ToArray();
        using var probe = TestTensors.Randn(9, 8, 16);
        var requested = new List<FisherVariant>();
        Tensor Quantize(string text)
        {
            torch.manual_seed(7);
            using var model = nn.Sequential(("fc", nn.Linear(16, 8)));
            model.eval();
            var services = new SettingServices
            {
                Layers = "*", Seed = 0, Weighting = new FisherWeighting { Floor = 0.1 },
                Calibration = _ => new ModuleCalibrationSource(model, inputs, steps.Cast<TimestepInfo?>().ToList()),
                Fisher = variant => { requested.Add(variant); return fisher; },
            };
            SettingCatalog.Configure(new QuantizationBuilder().ForModel(model), SettingCatalog.ParseSetting(text), services).Build().Apply();
            using var _ = torch.no_grad();
            return model.call(probe).detach().clone();
        }
        using var power = Quantize("gptqf-w4a16");
        using var rank = Quantize("gptqf-w4a16-nrank-traj");
        using var again = Quantize("gptqf-w4a16-nrank-traj");
        Assert.That(requested, Is.EqualTo(new[]
        {
            new FisherVariant(FisherLossSpace.Noise, FisherInputs.QSample),
            new FisherVariant(FisherLossSpace.Noise, FisherInputs.Trajectory),
            new FisherVariant(FisherLossSpace.Noise, FisherInputs.Trajectory),
        }));
        Assert.That(again.allclose(rank, 0, 0), "deterministic");
        using var diff = (rank - power).abs().max();
        Assert.That(diff.item<float>(), Is.GreaterThan(0f), "the normalization reaches the Hessian weights");
        foreach (var t in inputs) t.Dispose();
    }
}
