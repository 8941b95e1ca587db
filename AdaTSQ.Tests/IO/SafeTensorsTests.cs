using AdaTSQ.IO;
using AdaTSQ.Models.DiT;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.IO;

public class SafeTensorsTests
{
    private string _dir = "";
    private static readonly DiTConfig Small = new() { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 16, Depth = 1, NumHeads = 2, NumClasses = 3, LearnSigma = false };

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("adatsq-st-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void RoundTripsTensorsOfSeveralDtypesAndMetadata()
    {
        var path = Path.Combine(_dir, "a.safetensors");
        using var f = TestTensors.Randn(1, 3, 5);
        using var h = f.to(ScalarType.Float16);
        using var i = torch.arange(0, 7, dtype: ScalarType.Int64);
        using var b = torch.tensor(new byte[] { 1, 2, 250 });
        SafeTensors.Save(path, [("f", f), ("h", h), ("i", i), ("b", b)], new Dictionary<string, string> { ["seed"] = "3" });

        var (entries, meta, _) = SafeTensors.ReadHeader(path);
        Assert.That(meta["seed"], Is.EqualTo("3"));
        Assert.That(entries.Select(e => e.Name), Is.EqualTo(new[] { "f", "h", "i", "b" }));
        var loaded = SafeTensors.Load(path);
        Assert.That(TestTensors.Identical(loaded["f"], f) && TestTensors.Identical(loaded["h"], h) && TestTensors.Identical(loaded["i"], i) && TestTensors.Identical(loaded["b"], b), Is.True);
        Assert.That(loaded["h"].dtype, Is.EqualTo(ScalarType.Float16));
        foreach (var t in loaded.Values) t.Dispose();
        // The header is padded to 8 bytes, as other writers expect.
        var bytes = File.ReadAllBytes(path);
        Assert.That(BitConverter.ToUInt64(bytes, 0) % 8, Is.Zero);
    }

    [Test]
    public void AModelRoundTripsThroughItsStateDict()
    {
        var path = Path.Combine(_dir, "dit.safetensors");
        using var source = Models.DiTTests.RandomisedModel(Small);
        SafeTensors.SaveModule(source, path);
        using var target = new DiT(Small, seed: 9);
        SafeTensors.LoadInto(target, path);
        var expected = source.state_dict();
        foreach (var (name, t) in target.state_dict()) Assert.That(TestTensors.Identical(t, expected[name]), Is.True, name);
    }

    [Test]
    public void AModelThatDoesNotFitListsEveryProblemAndIsNotTouched()
    {
        var path = Path.Combine(_dir, "other.safetensors");
        using (var other = new DiT(Small with { HiddenSize = 24, NumHeads = 2, Depth = 2 })) SafeTensors.SaveModule(other, path);
        using var target = Models.DiTTests.RandomisedModel(Small);
        var before = target.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var error = Assert.Throws<CheckpointException>(() => SafeTensors.LoadInto(target, path))!;
        Assert.That(error.UnexpectedKeys, Does.Contain("blocks.1.attn.qkv.weight"));
        Assert.That(error.ShapeMismatches, Has.Some.Contains("blocks.0.attn.qkv.weight: file [72, 24] vs model [48, 16]"));
        Assert.That(error.Message, Does.Contain("other.safetensors").And.Contain("nothing was loaded"));
        foreach (var (name, t) in target.state_dict()) Assert.That(TestTensors.Identical(t, before[name]), Is.True, $"{name} unchanged");
    }

    [Test]
    public void MissingKeysAreListed()
    {
        var path = Path.Combine(_dir, "partial.safetensors");
        using var model = new DiT(Small);
        SafeTensors.Save(path, model.state_dict().Where(kv => !kv.Key.StartsWith("final_layer", StringComparison.Ordinal)).Select(kv => (kv.Key, kv.Value)));
        var error = Assert.Throws<CheckpointException>(() => SafeTensors.LoadInto(model, path))!;
        Assert.That(error.MissingKeys, Is.EquivalentTo(new[] { "final_layer.linear.weight", "final_layer.linear.bias", "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias" }));
    }

    [Test]
    public void TruncatedAndForeignFilesGetTypedErrors()
    {
        var path = Path.Combine(_dir, "full.safetensors");
        using (var model = new DiT(Small)) SafeTensors.SaveModule(model, path);
        var bytes = File.ReadAllBytes(path);
        var truncated = Path.Combine(_dir, "truncated.safetensors");
        File.WriteAllBytes(truncated, bytes[..^100]);
        var cut = Assert.Throws<CheckpointException>(() => SafeTensors.Load(truncated))!;
        Assert.That(cut.Message, Does.Contain("truncated.safetensors").And.Contain("truncated"));

        var text = Path.Combine(_dir, "notes.safetensors");
        File.WriteAllText(text, "this is a text file, not tensors");
        Assert.Throws<CheckpointException>(() => SafeTensors.ReadHeader(text));
        Assert.Throws<CheckpointException>(() => SafeTensors.ReadHeader(Path.Combine(_dir, "absent.safetensors")));
        Assert.That(Directory.GetFiles(_dir).Where(f => f.EndsWith(".tmp", StringComparison.Ordinal)), Is.Empty);
    }
}
