using System.Reflection;
using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Models;

/// <summary>
/// The DiT states its fusions through <see cref="FusedLinear.Forward"/>: a layer implementing
/// <see cref="IFusedLinear"/> gets the fused call, any other layer the composed float ops around a plain call.
/// </summary>
public class FusedLinearDispatchTests
{
    private static readonly DiTConfig Tiny = new() { InputSize = 8, PatchSize = 2, InChannels = 3, HiddenSize = 32, Depth = 2, NumHeads = 4, NumClasses = 5 };

    // What a layer was asked to run around itself (recorded as flags: the ops' tensors belong to the caller's scope).
    private readonly record struct OpsSeen(bool LayerNorm, bool Shift, bool Scale, FusedActivation Activation, bool Residual, bool Gate)
    {
        public static OpsSeen Of(FusedLinearOps ops) =>
            new(ops.LayerNorm, ops.Shift is not null, ops.Scale is not null, ops.Activation, ops.Residual is not null, ops.Gate is not null);
    }

    private static readonly OpsSeen Modulate = new(true, true, true, FusedActivation.None, false, false);
    private static readonly OpsSeen ModulateGelu = new(true, true, true, FusedActivation.GeluTanh, false, false);
    private static readonly OpsSeen GatedResidual = new(false, false, false, FusedActivation.None, true, true);

    // The fusion DiT states at each of its fused linear layers.
    private static readonly Dictionary<string, OpsSeen> Expected = new()
    {
        ["blocks.0.attn.qkv"] = Modulate, ["blocks.0.attn.proj"] = GatedResidual,
        ["blocks.0.mlp.fc1"] = ModulateGelu, ["blocks.0.mlp.fc2"] = GatedResidual,
        ["blocks.1.attn.qkv"] = Modulate, ["blocks.1.attn.proj"] = GatedResidual,
        ["blocks.1.mlp.fc1"] = ModulateGelu, ["blocks.1.mlp.fc2"] = GatedResidual,
        ["final_layer.linear"] = Modulate,
    };

    /// <summary>A linear layer that can fuse: runs the composed ops itself and records each kind of call.</summary>
    private sealed class FusingLinear : nn.Module<Tensor, Tensor>, IFusedLinear
    {
        private readonly Linear inner;

        public FusingLinear(Linear inner) : base(nameof(FusingLinear))
        {
            this.inner = inner;
            RegisterComponents();
        }

        public List<OpsSeen> FusedCalls { get; } = [];

        public int PlainCalls { get; private set; }

        public override Tensor forward(Tensor input)
        {
            PlainCalls++;
            return inner.call(input);
        }

        public Tensor ForwardFused(Tensor input, FusedLinearOps ops)
        {
            FusedCalls.Add(OpsSeen.Of(ops));
            using var x = ops.ComposePrologue(input);
            using var y = inner.call(x);
            return ops.ComposeEpilogue(y);
        }
    }

    /// <summary>The same layer without <see cref="IFusedLinear"/>: it can only be called.</summary>
    private sealed class PlainLinear : nn.Module<Tensor, Tensor>
    {
        private readonly Linear inner;

        public PlainLinear(Linear inner) : base(nameof(PlainLinear))
        {
            this.inner = inner;
            RegisterComponents();
        }

        public int PlainCalls { get; private set; }

        public override Tensor forward(Tensor input)
        {
            PlainCalls++;
            return inner.call(input);
        }
    }

    // Puts wrap(layer) in the field of its parent module that holds each linear layer of root held in a
    // field (in DiT, the layers it calls through FusedLinear.Forward; the others sit in Sequentials).
    private static Dictionary<string, T> Swap<T>(nn.Module root, Func<Linear, T> wrap, IEnumerable<string> expected) where T : nn.Module<Tensor, Tensor>
    {
        var modules = root.named_modules().ToDictionary(m => m.name, m => m.module);
        var swapped = new Dictionary<string, T>();
        foreach (var (name, module) in modules)
        {
            if (module is not Linear linear) continue;
            int dot = name.LastIndexOf('.');
            var parent = dot < 0 ? root : modules[name[..dot]];
            if (parent is Sequential) continue;
            var field = parent.GetType().GetFields(BindingFlags.Instance | BindingFlags.NonPublic)
                .Single(f => ReferenceEquals(f.GetValue(parent), linear));
            var wrapper = wrap(linear);
            field.SetValue(parent, wrapper);
            swapped[name] = wrapper;
        }
        Assert.That(swapped.Keys, Is.EquivalentTo(expected), "the linear layers called through FusedLinear.Forward");
        return swapped;
    }

    private static (Tensor X, Tensor T, Tensor Y) Inputs()
    {
        var gen = new Generator(7);
        return (torch.randn([2, Tiny.InChannels, Tiny.InputSize, Tiny.InputSize], generator: gen), torch.tensor(new[] { 3f, 410f }), torch.tensor(new[] { 1L, 4L }));
    }

    [Test]
    public void AnIFusedLinearLayerGetsTheFusedCallWithTheFusionTheModelStates()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = DiTTests.RandomisedModel(Tiny);
        var (x, t, y) = Inputs();
        var reference = model.call(x, t, y);

        var layers = Swap(model, linear => new FusingLinear(linear), Expected.Keys);
        var output = model.call(x, t, y);

        foreach (var (name, layer) in layers)
        {
            Assert.That(layer.FusedCalls, Is.EqualTo(new[] { Expected[name] }), $"{name}: one fused call with the model's prologue / epilogue");
            Assert.That(layer.PlainCalls, Is.Zero, $"{name}: not called around the composed ops");
        }
        Assert.That(TestTensors.Identical(output, reference), Is.True, "the same composed ops, run by the layer: bit for bit the float model");
    }

    [Test]
    public void AnyOtherLayerIsCalledBetweenTheComposedFloatOps()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = DiTTests.RandomisedModel(Tiny);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var block = (DiTBlock)modules["blocks.0"];
        var final = (FinalLayer)modules["final_layer"];
        nn.Module<Tensor, Tensor> M(string name) => (nn.Module<Tensor, Tensor>)modules[name]; // the original layers
        var layers = Swap(block, linear => new PlainLinear(linear), ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]);
        var last = Swap(final, linear => new PlainLinear(linear), ["linear"]);
        var gen = new Generator(8);
        var x = torch.randn([2, 16, 32], generator: gen);
        var c = torch.randn([2, 32], generator: gen);
        var blockOut = block.call(x, c);
        var finalOut = final.call(x, c);

        // DiT's models.py, op for op (as FloatDiTBlockIsBitIdenticalToTheOfficialFormula), with the original layers.
        Tensor Norm(Tensor h) => nn.functional.layer_norm(h, [32], null, null, 1e-6);
        var m = M("blocks.0.adaLN_modulation").call(c).chunk(6, dim: 1);
        var qkv = M("blocks.0.attn.qkv").call(DiTBlock.Modulate(Norm(x), m[0], m[1])).reshape(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4);
        var attn = M("blocks.0.attn.proj").call(nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(2, 16, 32));
        var expected = x + m[2].unsqueeze(1) * attn;
        var mlp = M("blocks.0.mlp.fc2").call(nn.functional.gelu(M("blocks.0.mlp.fc1").call(DiTBlock.Modulate(Norm(expected), m[3], m[4])), TorchSharp.Modules.GELU.Approximate.tanh));
        expected = expected + m[5].unsqueeze(1) * mlp;
        var f = M("final_layer.adaLN_modulation").call(c).chunk(2, dim: 1);
        var expectedFinal = M("final_layer.linear").call(DiTBlock.Modulate(Norm(x), f[0], f[1]));

        foreach (var (name, layer) in layers.Concat(last))
            Assert.That(layer.PlainCalls, Is.EqualTo(1), $"{name}: one plain call");
        Assert.That(TestTensors.Identical(blockOut, expected), Is.True, "block: the prologue and epilogue run around the plain calls, bit for bit the official formula");
        Assert.That(TestTensors.Identical(finalOut, expectedFinal), Is.True, "final layer: likewise");
    }
}
