using AdaTSQ.Evaluation.Comparison;
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
    public void CompareHasATqDitRowOutsideTheDefaults()
    {
        Assert.That(ComparisonCatalog.Find("tqdit").Template, Is.EqualTo("tqdit-{bits}"));
        Assert.That(ComparisonCatalog.DefaultMethods, Does.Not.Contain("tqdit"));
        Assert.That(ComparisonCatalog.SettingFor("tqdit", BitSetting.W6A6).Activations.Dynamic, Is.False);
    }
}
