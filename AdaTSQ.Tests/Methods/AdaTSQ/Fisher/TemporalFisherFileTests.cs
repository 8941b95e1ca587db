using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.IO;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using TorchSharp;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

public class TemporalFisherFileTests
{
    [Test]
    public void ASavedEstimateLoadsWithTheSameStepsLayersAndValues()
    {
        var values = new double[,] { { 1e-9, 2.5 }, { Math.PI, 1e12 }, { 0, 7.25 } };
        var steps = Enumerable.Range(0, 3).Select(i => new TimestepInfo(i, 3, 999 - 333.5 * i)).ToList();
        var fisher = new TemporalFisher(steps, ["blocks.0.fc1", "blocks.0.fc2"], values, samplesPerStep: 16);
        string path = Path.Combine(Path.GetTempPath(), $"fisher-{Guid.NewGuid():N}.safetensors");
        try
        {
            fisher.Save(path);
            var loaded = TemporalFisher.Load(path);
            Assert.That(loaded.Steps, Is.EqualTo(fisher.Steps));
            Assert.That(loaded.Layers, Is.EqualTo(fisher.Layers));
            Assert.That(loaded.SamplesPerStep, Is.EqualTo(16));
            for (int t = 0; t < 3; t++)
                foreach (var l in fisher.Layers)
                    Assert.That(loaded[t, l], Is.EqualTo(fisher[t, l]), $"step {t}, {l}");
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void AFileOfAnotherKindIsATypedError()
    {
        string path = Path.Combine(Path.GetTempPath(), $"notfisher-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var t = torch.ones(2, 2)) SafeTensors.Save(path, [("fisher", t)]);
            var e = Assert.Throws<CalibrationException>(() => TemporalFisher.Load(path));
            Assert.That(e!.Message, Does.Contain(path).And.Contain(TemporalFisher.FileFormat));
        }
        finally { File.Delete(path); }
    }
}
