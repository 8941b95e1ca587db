using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.Methods.TqDit;
using AdaTSQ.Quantization;
using AdaTSQ.Samples.Evaluation;

namespace AdaTSQ.Tests.Methods.TqDit;

/// <summary>The tqdit setting strings of evaluate and compare.</summary>
public class TqDitCatalogTests
{
    [TestCase("tqdit-w8a8", 8, 8)]
    [TestCase("tqdit-w6a6", 6, 6)]
    [TestCase("tqdit-w4a8", 4, 8)]
    public void TqDitSettingsAreStaticPerTensor(string text, int w, int a)
    {
        var s = SettingCatalog.ParseSetting(text);
        Assert.That(s.Method, Is.EqualTo("tqdit"));
        Assert.That(s.Weights, Is.EqualTo(QuantSpec.Weight(w)));
        Assert.That(s.Activations, Is.EqualTo(QuantSpec.Activation(a, dynamic: false)), "static per-tensor without -static");
        Assert.That(SettingCatalog.NeedsCalibration(s), Is.True);
    }

    [TestCase("tqdit-w4a4-g64-ag64")]
    [TestCase("tqdit-w8a8-sq")]
    [TestCase("tqdit-w8a8-static4")]
    public void GroupWiseOrCombinedTqDitSettingsAreRefused(string text) =>
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting(text))!.Message, Does.Contain("per tensor"));

    [Test]
    public void MrqSuffixTurnsOnPostGeluMultiRegion()
    {
        var mrq = SettingCatalog.ParseSetting("tqdit-w4a8-mrq");
        Assert.That((mrq.Method, mrq.TqDitMrq, mrq.Name), Is.EqualTo(("tqdit", true, "TQDIT-W4A8-MRQ")));
        Assert.That(mrq.Activations, Is.EqualTo(QuantSpec.Activation(8, dynamic: false)));
        Assert.That(SettingCatalog.TqDitOptionsFor(mrq, seed: 3), Is.EqualTo(new TqDitOptions { Seed = 3, PostGeluMultiRegion = true }));
        var plain = SettingCatalog.ParseSetting("tqdit-w4a8");
        Assert.That(plain.TqDitMrq, Is.False);
        Assert.That(SettingCatalog.TqDitOptionsFor(plain, seed: 3).PostGeluMultiRegion, Is.False);
        Assert.That(SettingCatalog.ParseSetting(SettingCatalog.ParseSetting("tqdit-w6a6-mrq").Name).TqDitMrq, Is.True, "the setting's name parses back to it");
    }

    [TestCase("rtn-w4a8-mrq", "unknown part 'mrq'")]
    [TestCase("tqdit-w8a16-mrq", "needs quantized activations")]
    public void MrqIsRefusedWhereItCannotApply(string text, string reason) =>
        Assert.That(Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting(text))!.Message, Does.Contain(reason));

    [Test]
    public void CompareHasATqDitRowOutsideTheDefaults()
    {
        Assert.That(ComparisonCatalog.Find("tqdit").Template, Is.EqualTo("tqdit-{bits}"));
        Assert.That(ComparisonCatalog.DefaultMethods, Does.Not.Contain("tqdit"));
        Assert.That(ComparisonCatalog.SettingFor("tqdit", BitSetting.W6A6).Activations.Dynamic, Is.False);
    }
}
