using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Calibration;

public class CalibrationFileTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("adatsq-calib-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static LayerStatistics Collected(string name, long width, bool secondMoment, bool stepChannels, long seed)
    {
        var s = new LayerStatistics(name, width, secondMoment, stepChannels);
        for (int step = 0; step < 3; step++)
        {
            using var x = TestTensors.Randn(seed + step, 2, 5, width) * (step + 1);
            s.Add(x, new TimestepInfo(step, 3, 900 - 300 * step), weight: 0.5 + step);
        }
        return s;
    }

    private static void AssertSame(LayerStatistics a, LayerStatistics b)
    {
        Assert.That(b.LayerName, Is.EqualTo(a.LayerName));
        Assert.That(b.InFeatures, Is.EqualTo(a.InFeatures));
        Assert.That((b.Calls, b.Rows, b.CollectsSecondMoment, b.CollectsStepChannels), Is.EqualTo((a.Calls, a.Rows, a.CollectsSecondMoment, a.CollectsStepChannels)));
        Assert.That(BitConverter.DoubleToInt64Bits(b.InputMin), Is.EqualTo(BitConverter.DoubleToInt64Bits(a.InputMin)));
        Assert.That(BitConverter.DoubleToInt64Bits(b.InputMax), Is.EqualTo(BitConverter.DoubleToInt64Bits(a.InputMax)));
        Assert.That(BitConverter.DoubleToInt64Bits(b.SecondMomentWeight), Is.EqualTo(BitConverter.DoubleToInt64Bits(a.SecondMomentWeight)));
        Assert.That(b.Steps, Is.EqualTo(a.Steps));
        foreach (var (x, y) in new[] { (a.ChannelAbsMax, b.ChannelAbsMax), (a.ChannelMin, b.ChannelMin), (a.ChannelMax, b.ChannelMax), (a.SecondMoment, b.SecondMoment) })
        {
            Assert.That(y is null, Is.EqualTo(x is null));
            if (x is not null) Assert.That(TestTensors.Identical(x, y!), Is.True);
        }
        Assert.That(b.StepChannels.Keys, Is.EquivalentTo(a.StepChannels.Keys));
        foreach (var (step, (min, max)) in a.StepChannels)
        {
            Assert.That(TestTensors.Identical(min, b.StepChannels[step].Min), Is.True);
            Assert.That(TestTensors.Identical(max, b.StepChannels[step].Max), Is.True);
        }
    }

    [Test]
    public void SavedStatisticsLoadBitForBit()
    {
        using var original = new CalibrationResult([
            Collected("blocks.0.fc1", 16, secondMoment: true, stepChannels: true, seed: 1),
            Collected("blocks.0.fc2", 8, secondMoment: false, stepChannels: false, seed: 7),
            new LayerStatistics("idle", 4, collectSecondMoment: true)], items: 3, TimeSpan.FromSeconds(1.25));
        string path = Path.Combine(_dir, "c.safetensors");
        original.Save(path, fingerprint: "plan-1");

        var (loaded, fingerprint) = CalibrationFile.Load(path);
        using (loaded)
        {
            Assert.That(fingerprint, Is.EqualTo("plan-1"));
            Assert.That(loaded.Items, Is.EqualTo(3));
            Assert.That(loaded.Layers.Keys, Is.EquivalentTo(original.Layers.Keys));
            foreach (var name in original.Layers.Keys) AssertSame(original.Layers[name], loaded.Layers[name]);
            Assert.That(loaded.For("idle")!.HasData, Is.False);
            Assert.That(double.IsPositiveInfinity(loaded.For("idle")!.InputMin), Is.True);
        }
    }

    [Test]
    public void AFileOfAnotherKindIsATypedErrorNamingTheFile()
    {
        string path = Path.Combine(_dir, "weights.safetensors");
        using (var t = torch.ones(3)) SafeTensors.Save(path, [("w", t)]);
        var e = Assert.Throws<CalibrationException>(() => CalibrationResult.Load(path));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("adatsq-calibration"));
        Assert.Throws<CalibrationException>(() => CalibrationResult.Load(Path.Combine(_dir, "missing.safetensors")));
    }

    [Test]
    public void ATensorOfTheWrongShapeIsATypedErrorNamingLayerAndShapes()
    {
        using var original = new CalibrationResult([Collected("fc", 16, secondMoment: true, stepChannels: false, seed: 3)], 1, TimeSpan.Zero);
        string path = Path.Combine(_dir, "c.safetensors");
        original.Save(path);
        // Rewrite the file with the second moment cut to [8, 8] but the header unchanged.
        var (entries, metadata, _) = SafeTensors.ReadHeader(path);
        var tensors = SafeTensors.Load(path);
        using var cut = tensors["layers.0.second_moment"][..8, ..8].contiguous();
        SafeTensors.Save(path, tensors.Select(p => (p.Key, p.Key == "layers.0.second_moment" ? cut : p.Value)).ToList(), metadata);
        foreach (var t in tensors.Values) t.Dispose();
        Assert.That(entries, Has.Count.EqualTo(4));

        var e = Assert.Throws<CalibrationException>(() => CalibrationResult.Load(path));
        Assert.That(e!.Message, Does.Contain("'fc'").And.Contain("[8, 8]").And.Contain("[16, 16]"));
    }
}
