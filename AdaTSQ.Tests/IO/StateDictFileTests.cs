using AdaTSQ.IO;
using AdaTSQ.Models.DiT;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.IO;

/// <summary>PyTorch zip state dicts (what torch.save(model.state_dict()) writes), the format of the official DiT checkpoints.</summary>
public class StateDictFileTests
{
    private static readonly DiTConfig Small = new() { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 16, Depth = 1, NumHeads = 2, NumClasses = 3, LearnSigma = true };
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("adatsq-pt-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void APyTorchStateDictLoadsIntoTheModel()
    {
        var path = Path.Combine(_dir, "dit.pt");
        using var source = Models.DiTTests.RandomisedModel(Small);
        TorchSharp.PyBridge.PyTorchPickler.PickleStateDict(path, source.state_dict());
        Assert.That(StateDictFile.IsPyTorchZip(path), Is.True);

        using var loaded = DiTCheckpoint.Load(path, Small);
        var expected = source.state_dict();
        foreach (var (name, t) in loaded.state_dict()) Assert.That(TestTensors.Identical(t, expected[name]), Is.True, name);
    }

    [Test]
    public void AWrongPyTorchFileListsItsProblemsAndLoadsNothing()
    {
        var path = Path.Combine(_dir, "bigger.pt");
        using (var other = new DiT(Small with { HiddenSize = 24 })) TorchSharp.PyBridge.PyTorchPickler.PickleStateDict(path, other.state_dict());
        using var target = Models.DiTTests.RandomisedModel(Small);
        var before = target.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var error = Assert.Throws<CheckpointException>(() => StateDictFile.LoadInto(target, path))!;
        Assert.That(error.ShapeMismatches, Has.Some.StartsWith("blocks.0.mlp.fc1.weight: file [96, 24] vs model [64, 16]"));
        foreach (var (name, t) in target.state_dict()) Assert.That(TestTensors.Identical(t, before[name]), Is.True, $"{name} unchanged");
    }

    [Test]
    public void ATruncatedPyTorchFileIsATypedError()
    {
        var path = Path.Combine(_dir, "full.pt");
        using var model = new DiT(Small);
        TorchSharp.PyBridge.PyTorchPickler.PickleStateDict(path, model.state_dict());
        var cut = Path.Combine(_dir, "cut.pt");
        File.WriteAllBytes(cut, File.ReadAllBytes(path)[..4096]);
        var error = Assert.Throws<CheckpointException>(() => StateDictFile.LoadInto(model, cut))!;
        Assert.That(error.Message, Does.Contain("cut.pt"));
    }
}
