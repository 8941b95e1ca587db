using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.Samples.Evaluation;

namespace AdaTSQ.Tests.Methods.Htg;

/// <summary>The htg setting strings of evaluate and compare.</summary>
public class HtgSettingTests
{
    [Test]
    public void HtgSettingsParseWithTheirOptions()
    {
        var plain = SettingCatalog.ParseSetting("htg-w8a8");
        Assert.That(plain.Htg, Is.EqualTo(new global::AdaTSQ.Methods.Htg.HtgOptions()));
        Assert.That(plain.HtgGptq, Is.False);
        Assert.That(SettingCatalog.NeedsCalibration(plain), Is.True);

        var ablation = SettingCatalog.ParseSetting("htg-w4a8-g64-gptq-hg3-shiftonly");
        Assert.That(ablation.HtgGptq, Is.True);
        Assert.That(ablation.Weights.GroupSize, Is.EqualTo(64));
        Assert.That(ablation.Htg!.Groups, Is.EqualTo(3));
        Assert.That(ablation.Htg.Scale, Is.False);
        Assert.That(ablation.Htg.Shift, Is.True);
        Assert.That(SettingCatalog.ParseSetting("htg-w8a8-scaleonly").Htg!.Shift, Is.False);

        Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("htg-w8a8-sq"));
        Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("htg-w8a8-shiftonly-scaleonly"));
        Assert.Throws<ArgumentException>(() => SettingCatalog.ParseSetting("rtn-w8a8-shiftonly"), "the HTG parts belong to htg only");
        Assert.That(SettingCatalog.ParseSetting("rtn-w8a8").Htg, Is.Null);
    }

    [Test]
    public void CompareHasHtgRowsOutsideTheDefaults()
    {
        Assert.That(ComparisonCatalog.SettingFor("htg", BitSetting.Parse("W4A8")).Htg, Is.Not.Null);
        Assert.That(ComparisonCatalog.SettingFor("htg-gptq", BitSetting.Parse("W8A8")).HtgGptq, Is.True);
        Assert.That(ComparisonCatalog.DefaultMethods, Does.Not.Contain("htg"));
    }
}
