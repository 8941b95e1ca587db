using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Models;

public class DiTTests
{
    private static readonly DiTConfig Tiny = new() { InputSize = 8, PatchSize = 2, InChannels = 3, HiddenSize = 32, Depth = 2, NumHeads = 4, NumClasses = 5, LearnSigma = true };

    private static (Tensor X, Tensor T, Tensor Y) Inputs(long n, DiTConfig c, long seed = 1)
    {
        var gen = new Generator((ulong)seed);
        return (torch.randn([n, c.InChannels, c.InputSize, c.InputSize], generator: gen),
            torch.tensor(Enumerable.Range(0, (int)n).Select(i => 100f * i + 3).ToArray()),
            torch.tensor(Enumerable.Range(0, (int)n).Select(i => (long)(i % c.NumClasses)).ToArray()));
    }

    [Test]
    public void AdaLnZeroAtInitialisationOutputsExactlyZero()
    {
        using var model = new DiT(Tiny, seed: 2);
        model.eval();
        var (x, t, y) = Inputs(3, Tiny);
        using var output = model.call(x, t, y);
        Assert.That(output.shape, Is.EqualTo(new long[] { 3, 6, 8, 8 }));
        Assert.That(output.abs().max().item<float>(), Is.Zero);
    }

    [Test]
    public void PatchifyAndUnpatchifyAreInverse()
    {
        using var model = new DiT(Tiny with { LearnSigma = false });
        var (x, _, _) = Inputs(2, Tiny);
        using var tokens = model.Patchify(x);
        Assert.That(tokens.shape, Is.EqualTo(new long[] { 2, 16, 12 }));
        using var back = model.Unpatchify(tokens);
        Assert.That(TestTensors.Identical(back, x), Is.True);
        // Token 1 is the patch at row 0, columns 2–3; its features are ordered (p, q, c).
        Assert.That(tokens[0, 1, 0].item<float>(), Is.EqualTo(x[0, 0, 0, 2].item<float>()));
        Assert.That(tokens[0, 1, 1].item<float>(), Is.EqualTo(x[0, 1, 0, 2].item<float>()));
        Assert.That(tokens[0, 1, 3].item<float>(), Is.EqualTo(x[0, 0, 0, 3].item<float>()));
    }

    [Test]
    public void CfgWithScaleOneEqualsTheConditionalOutput()
    {
        using var model = RandomisedModel(Tiny);
        var (x, t, y) = Inputs(2, Tiny);
        using var both = torch.cat([x, x]);
        using var tt = torch.cat([t, t]);
        using var yy = torch.cat([y, torch.full_like(y, model.NullClass)]);
        using var guided = model.ForwardWithCfg(both, tt, yy, cfgScale: 1.0);
        using var cond = model.call(x, t, y);
        Assert.That((guided[..2] - cond).abs().max().item<float>(), Is.LessThan(1e-5f));
        using var strong = model.ForwardWithCfg(both, tt, yy, cfgScale: 4.0);
        Assert.That((strong[..2, ..3] - cond[.., ..3]).abs().max().item<float>(), Is.GreaterThan(1e-3f), "guidance changes the guided channels");
        Assert.That((strong[..2, 3..] - cond[.., 3..]).abs().max().item<float>(), Is.LessThan(1e-5f), "the variance channels stay conditional");
    }

    [Test]
    public void TimestepEmbeddingFollowsTheOfficialFormula()
    {
        using var t = torch.tensor(new float[] { 0f, 10f });
        using var e = TimestepEmbedder.SinusoidalEmbedding(t, 6);
        // half = 3, freqs = exp(-ln(1e4)·i/3) = 1, 10^(-4/3), 10^(-8/3); [cos, sin]
        double[] f = [1, Math.Pow(10, -4.0 / 3), Math.Pow(10, -8.0 / 3)];
        var expected = new[] { 1f, 1f, 1f, 0f, 0f, 0f }.Concat(f.Select(v => (float)Math.Cos(10 * v))).Concat(f.Select(v => (float)Math.Sin(10 * v))).ToArray();
        Assert.That(TestTensors.Data(e), Is.EqualTo(expected).Within(1e-5f));
    }

    [Test]
    public void PositionEmbeddingEncodesColumnThenRow()
    {
        using var pe = SinCosPositionEmbedding.Create(8, 3);
        Assert.That(pe.shape, Is.EqualTo(new long[] { 9, 8 }));
        // Token (row 1, column 2): first half E(2) = [sin 2, sin 0.02, cos 2, cos 0.02], second half E(1).
        var token = TestTensors.Data(pe[5]);
        Assert.That(token, Is.EqualTo(new[] { MathF.Sin(2), MathF.Sin(0.02f), MathF.Cos(2), MathF.Cos(0.02f), MathF.Sin(1), MathF.Sin(0.01f), MathF.Cos(1), MathF.Cos(0.01f) }).Within(1e-6f));
    }

    [Test]
    public void BadInputsNameTheExpectedShape()
    {
        using var model = new DiT(Tiny);
        using var x = torch.zeros(2, 3, 7, 7);
        using var t = torch.zeros(2);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        var error = Assert.Throws<ArgumentException>(() => model.call(x, t, y))!;
        Assert.That(error.Message, Does.Contain("[2, 3, 7, 7]").And.Contain("[N, 3, 8, 8]"));
        Assert.Throws<ArgumentException>(() => DiTConfig.Named("DiT-M/2"));
        Assert.Throws<ArgumentException>(() => new DiT(Tiny with { HiddenSize = 30 }));
    }

    [Test]
    public void ItsLinearLayersCanBeQuantized()
    {
        using var model = RandomisedModel(Tiny);
        var (x, t, y) = Inputs(2, Tiny);
        using var before = model.call(x, t, y);
        var report = ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.*"], []));
        Assert.That(report.Replaced, Has.Count.EqualTo(2 * 5));
        Assert.That(report.Replaced.Select(r => r.Name), Does.Contain("blocks.1.adaLN_modulation.1").And.Contain("blocks.0.attn.qkv"));
        using var after = model.call(x, t, y);
        Assert.That(TestTensors.Identical(after, before), Is.True);
        ModelSurgery.Restore(model);
    }

    [Test]
    [Category("Slow")]
    public void DiTXL2HasTheOfficialStateDictAndParameterCount()
    {
        var previous = torch.get_default_dtype();
        torch.set_default_dtype(ScalarType.BFloat16); // halves the 2.7 GB of the float32 model; names and shapes are what is tested
        try
        {
            using var model = new DiT(DiTConfig.Named("DiT-XL/2"));
            var state = model.state_dict();
            var expected = new List<string> { "x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias",
                "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight", "pos_embed" };
            for (int i = 0; i < 28; i++)
                foreach (var n in new[] { "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1" })
                    expected.AddRange([$"blocks.{i}.{n}.weight", $"blocks.{i}.{n}.bias"]);
            expected.AddRange(["final_layer.linear.weight", "final_layer.linear.bias", "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"]);
            Assert.That(state.Keys, Is.EquivalentTo(expected));
            Assert.That(state.Values.Sum(v => v.numel()), Is.EqualTo(675_129_632L), "the official DiT-XL/2 parameter count");
            Assert.That(state["y_embedder.embedding_table.weight"].shape, Is.EqualTo(new long[] { 1001, 1152 }));
            Assert.That(state["final_layer.linear.weight"].shape, Is.EqualTo(new long[] { 32, 1152 }));
            Assert.That(state["pos_embed"].shape, Is.EqualTo(new long[] { 1, 256, 1152 }));
        }
        finally
        {
            torch.set_default_dtype(previous);
        }
    }

    /// <summary>A model whose zero-initialised layers are given random values, so outputs are not trivially zero.</summary>
    internal static DiT RandomisedModel(DiTConfig config)
    {
        var model = new DiT(config, seed: 4);
        model.eval();
        using var noGrad = torch.no_grad();
        var gen = new Generator(5);
        foreach (var (_, p) in model.named_parameters()) p.copy_(torch.randn(p.shape, generator: gen) * 0.1);
        return model;
    }
}

public class DiTCheckpointTests
{
    [Test]
    public void ACheckpointWithItsConfigLoadsIntoAnEqualModel()
    {
        var config = new AdaTSQ.Models.DiT.DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 16, Depth = 1, NumHeads = 2, NumClasses = 3, LearnSigma = false };
        var path = Path.Combine(Path.GetTempPath(), $"dit-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var source = DiTTests.RandomisedModel(config);
            AdaTSQ.IO.SafeTensors.SaveModule(source, path, new Dictionary<string, string> { ["config"] = System.Text.Json.JsonSerializer.Serialize(config) });
            using var loaded = AdaTSQ.Models.DiT.DiTCheckpoint.Load(path);
            Assert.That(loaded.Config, Is.EqualTo(config));
            using var x = TestTensors.Randn(1, 2, 1, 8, 8);
            using var t = torch.tensor(new float[] { 10, 500 });
            using var y = torch.tensor(new long[] { 0, 2 });
            using var a = source.call(x, t, y);
            using var b = loaded.call(x, t, y);
            Assert.That(TestTensors.Identical(a, b), Is.True);

            AdaTSQ.IO.SafeTensors.SaveModule(source, path);
            var error = Assert.Throws<AdaTSQ.IO.CheckpointException>(() => AdaTSQ.Models.DiT.DiTCheckpoint.Load(path).Dispose())!;
            Assert.That(error.Message, Does.Contain("no DiT configuration"));
        }
        finally { File.Delete(path); }
    }
}
