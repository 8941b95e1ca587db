using AdaTSQ.Methods.Ptq4Dit;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Ptq4Dit;

/// <summary>The defining property of the offline re-parameterization: on the real DiT module the folded model computes the same function.</summary>
public class ReparameterizationTests
{
    // The shipped model's widths (192, 6 heads), two blocks; every parameter random (adaLN-Zero's zeros would hide a wrong fold: gate 0).
    private static DiT Model() => DiTTests.RandomisedModel(DiTConfig.Mnist with { Depth = 2 });

    private static (Tensor X, Tensor T, Tensor Y) Inputs(DiT model)
    {
        var c = model.Config;
        var gen = new Generator(3);
        return (torch.randn([4, c.InChannels, c.InputSize, c.InputSize], generator: gen),
            torch.tensor(new float[] { 3, 250, 610, 999 }), torch.tensor(new long[] { 0, 3, 7, c.NumClasses }));
    }

    /// <summary>Factors spread over two decades each way (log-uniform in [0.01, 100]), seeded.</summary>
    private static Dictionary<string, Tensor> RandomFactors(DiT model, IEnumerable<string> layers, long seed)
    {
        var gen = new Generator((ulong)seed);
        var inputs = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        return layers.ToDictionary(l => l, l => torch.pow(10.0, torch.rand(inputs[l + ".weight"][1], generator: gen) * 4 - 2));
    }

    private static readonly string[] Balanced =
        ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.1.attn.qkv", "blocks.1.attn.proj", "blocks.1.mlp.fc1", "final_layer.linear"];

    private static Dictionary<string, Tensor> Snapshot(DiT model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    [Test]
    public void TheFoldedDiTComputesTheSameOutput()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = Model();
        var (x, t, y) = Inputs(model);
        var before = model.call(x, t, y);
        var original = Snapshot(model);
        using var fold = DiTReparameterization.Fold(model, RandomFactors(model, Balanced, seed: 9));

        var after = model.call(x, t, y);
        double error = TestTensors.RelativeError(after, before);
        TestContext.Out.WriteLine($"relative output change after folding factors in [0.01, 100] into 7 layers: {error:E2}");
        Assert.That(error, Is.LessThan(1e-5));
        // The parameters really changed: the weight columns of the balanced layers, adaLN's shift/scale rows, qkv's value rows.
        Assert.That(fold.ChangedParameters, Is.SupersetOf(new[] { "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.1.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias" }));
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.That(TestTensors.RelativeError(parameters["blocks.0.mlp.fc1.weight"], original["blocks.0.mlp.fc1.weight"]), Is.GreaterThan(0.5));
        var gate = parameters["blocks.0.adaLN_modulation.1.weight"].narrow(0, 2 * 192, 192);
        Assert.That(TestTensors.Identical(gate, original["blocks.0.adaLN_modulation.1.weight"].narrow(0, 2 * 192, 192)), Is.True, "the gates are untouched");
        var queries = parameters["blocks.1.attn.qkv.bias"].narrow(0, 0, 192);
        Assert.That(TestTensors.Identical(queries, original["blocks.1.attn.qkv.bias"].narrow(0, 0, 192)), Is.True, "query bias untouched (only value rows fold proj's factors)");
        Assert.That(fold.Layers.Select(l => l.FoldedInto), Does.Contain("blocks.1.attn.qkv (value rows)").And.Contain("blocks.0.adaLN_modulation.1 (shift_mlp, scale_mlp)"));

        fold.Undo();
        foreach (var (name, p) in model.named_parameters())
            Assert.That(TestTensors.Identical(p, original[name]), Is.True, $"{name} restored exactly");
        Assert.That(TestTensors.Identical(model.call(x, t, y), before), Is.True);
        Assert.That(fold.CanUndo, Is.False);
        Assert.Throws<InvalidOperationException>(() => fold.Undo());
    }

    [Test]
    public void OneWrongFoldWouldShowInTheOutput()
    {
        // The test above can fail: scale qkv's columns without folding B⁻¹ into adaLN and the output moves.
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = Model();
        var (x, t, y) = Inputs(model);
        var before = model.call(x, t, y);
        var b = RandomFactors(model, ["blocks.0.attn.qkv"], seed: 2)["blocks.0.attn.qkv"];
        var qkv = model.named_parameters().Single(p => p.name == "blocks.0.attn.qkv.weight").parameter;
        qkv.mul_(b.unsqueeze(0));
        Assert.That(TestTensors.RelativeError(model.call(x, t, y), before), Is.GreaterThan(1e-2));
    }

    [Test]
    public void TheFoldWorksThroughQuantLinearsThatHoldNoVersionYet()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = Model();
        var (x, t, y) = Inputs(model);
        var before = model.call(x, t, y);
        ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.*"], []));
        using (var fold = DiTReparameterization.Fold(model, RandomFactors(model, Balanced, seed: 4)))
        {
            Assert.That(TestTensors.RelativeError(model.call(x, t, y), before), Is.LessThan(1e-5));
            fold.Undo();
        }
        var qkv = ModelSurgery.FindQuantLinears(model).Single(l => l.LayerName == "blocks.1.attn.qkv");
        qkv.SetWeightVersion(QuantizedTensor.Quantize(qkv.Weight, QuantSpec.Weight(8)));
        var e = Assert.Throws<LayerQuantizationException>(() => DiTReparameterization.Fold(model, RandomFactors(model, ["blocks.1.attn.proj"], seed: 5)));
        Assert.That(e!.LayerName, Is.EqualTo("blocks.1.attn.qkv"), "proj folds into qkv's value rows, which are already quantized");
        ModelSurgery.Restore(model);
        Assert.That(TestTensors.Identical(model.call(x, t, y), before), Is.True, "a refused fold changes nothing");
    }

    [Test]
    public void Fc2AndBadFactorsAreRefused()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        var original = Snapshot(model);
        Assert.That(Assert.Throws<NotSupportedException>(() => DiTReparameterization.Fold(model, RandomFactors(model, ["blocks.0.mlp.fc2"], 1)))!.Message, Does.Contain("GELU"));
        Assert.Throws<NotSupportedException>(() => DiTReparameterization.Fold(model, new Dictionary<string, Tensor> { ["t_embedder.mlp.0"] = torch.ones(256) }));
        var wrong = Assert.Throws<ArgumentException>(() => DiTReparameterization.Fold(model, new Dictionary<string, Tensor>
        {
            ["blocks.0.attn.qkv"] = torch.ones(100),
            ["blocks.0.mlp.fc1"] = -torch.ones(192),
            ["blocks.7.attn.proj"] = torch.ones(192),
        }))!.Message;
        Assert.That(wrong, Does.Contain("[100]").And.Contain("expected [192]").And.Contain("positive").And.Contain("blocks.7.attn.proj"), "every problem is listed");
        foreach (var (name, p) in model.named_parameters())
            Assert.That(TestTensors.Identical(p, original[name]), Is.True, $"{name} unchanged by a refused fold");
        Assert.That(DiTReparameterization.KindOf("blocks.3.mlp.fc2"), Is.EqualTo(BalancedLayers.None));
        Assert.That(DiTReparameterization.FoldTargetOf("blocks.3.attn.proj"), Is.EqualTo("blocks.3.attn.qkv (value rows)"));
    }
}
