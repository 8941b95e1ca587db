using AdaTSQ.Models;
using AdaTSQ.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

public class ModelSurgeryTests
{
    private sealed class LinearFieldModel : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> ok;
        private readonly Linear sealedField;

        public LinearFieldModel() : base(nameof(LinearFieldModel))
        {
            ok = nn.Linear(8, 8);
            sealedField = nn.Linear(8, 8);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => sealedField.call(ok.call(x));
    }

    private sealed class ListModel : nn.Module<Tensor, Tensor>
    {
        private readonly ModuleList<nn.Module<Tensor, Tensor>> layers;

        public ListModel() : base(nameof(ListModel))
        {
            layers = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            foreach (var l in layers) x = l.call(x);
            return x;
        }
    }

    [Test]
    public void ReplacesExactlyTheTargetedLayersAndKeepsTheOutput()
    {
        using var model = new TinyTransformer(width: 32, depth: 3, seed: 5);
        using var x = TestTensors.Randn(1, 2, 6, 32);
        using var before = model.call(x);
        var keysBefore = model.state_dict().Keys.ToList();

        var report = ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.*.mlp.*"], ["blocks.2.*"]));

        Assert.That(report.Replaced.Select(r => r.Name), Is.EquivalentTo(new[] { "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2" }));
        Assert.That(ModelSurgery.FindQuantLinears(model).Select(q => q.LayerName), Is.EquivalentTo(report.Replaced.Select(r => r.Name)));
        Assert.That(ModelSurgery.FindLinears(model).Select(l => l.Name), Is.EquivalentTo(report.Skipped));
        Assert.That(report.Skipped, Has.Count.EqualTo(13 - 4));
        using var after = model.call(x);
        Assert.That(TestTensors.Identical(after, before), Is.True, "at 16 bits the model computes exactly what it did");
        Assert.That(model.state_dict().Keys, Is.EqualTo(keysBefore), "state dict names and order are unchanged");

        Assert.That(ModelSurgery.Restore(model), Is.EqualTo(4));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
        Assert.That(ModelSurgery.FindLinears(model), Has.Count.EqualTo(13));
        using var restored = model.call(x);
        Assert.That(TestTensors.Identical(restored, before), Is.True);
    }

    [Test]
    public void QuantizedLayersActuallyRunInTheForwardPass()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 6);
        using var x = TestTensors.Randn(2, 2, 4, 32);
        using var before = model.call(x);
        ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.0.mlp.fc2"], []));
        var fc2 = ModelSurgery.FindQuantLinears(model).Single();
        fc2.SetWeightVersion(QuantizedTensor.Quantize(fc2.Weight, QuantSpec.Weight(2)));
        fc2.DefaultConfig = LayerQuantConfig.Create(2);
        using var after = model.call(x);
        Assert.That(TestTensors.RelativeError(after, before), Is.GreaterThan(1e-3));
    }

    [Test]
    public void ModuleListsAreSupported()
    {
        using var model = new ListModel();
        using var x = TestTensors.Randn(3, 2, 8);
        using var before = model.call(x);
        var report = ModelSurgery.ReplaceLinears(model);
        Assert.That(report.Replaced.Select(r => r.Name), Is.EqualTo(new[] { "layers.0", "layers.2" }));
        using var after = model.call(x);
        Assert.That(TestTensors.Identical(after, before), Is.True);
        Assert.That(ModelSurgery.Restore(model), Is.EqualTo(2));
    }

    [Test]
    public void AFieldDeclaredAsLinearIsReportedAndNothingIsChanged()
    {
        using var model = new LinearFieldModel();
        var error = Assert.Throws<ModelSurgeryException>(() => ModelSurgery.ReplaceLinears(model))!;
        Assert.That(error.Message, Does.Contain("sealedField").And.Contain("Linear").And.Contain("Module<Tensor, Tensor>"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "the replaceable layer was not swapped either");
        Assert.That(ModelSurgery.ReplaceLinears(model, new LayerSelector(["ok"], [])).Replaced, Has.Count.EqualTo(1));
    }
}
