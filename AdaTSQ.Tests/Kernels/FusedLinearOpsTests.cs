using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Kernels;

/// <summary>The prologue / epilogue fused into the integer linear calls (LayerNorm + modulate, GELU, gated residual).</summary>
[NonParallelizable]
public class FusedLinearOpsTests
{
    private static KernelOptions Options(string path, int threads)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        return new KernelOptions { Isa = isa, Threads = threads };
    }

    private static readonly string[] Paths = ["avx512vnni", "avxvnni", "avx2", "scalar", "managed"];

    // (samples, tokens per sample, K)
    private static readonly (int S, int T, int K)[] RowShapes = [(1, 1, 1), (2, 3, 7), (3, 50, 75), (4, 64, 384)];

    private static double MaxAbs(Tensor t) => t.abs().max().item<float>();

    [Test]
    public void PrologueMatchesTorchsLayerNormAndModulateOnEveryPath([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads)
    {
        var options = Options(path, threads);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(3);
        foreach (var (s, t, k) in RowShapes)
        {
            var x = torch.randn([s, t, k], generator: gen) * 3 + 0.5;
            foreach (bool modulate in new[] { true, false })
            {
                var ops = new FusedLinearOps
                {
                    LayerNorm = true,
                    Shift = modulate ? torch.randn([s, k], generator: gen) : null,
                    Scale = modulate ? torch.randn([s, k], generator: gen) : null,
                };
                var expected = ops.ComposePrologue(x);
                var actual = TorchIntegerGemm.LayerNormModulate(x, ops, options);
                Assert.That(actual.shape, Is.EqualTo(x.shape));
                double tolerance = 1e-5 * Math.Max(1, MaxAbs(expected));
                Assert.That(MaxAbs(actual - expected), Is.LessThanOrEqualTo(tolerance), $"{path} [{s}, {t}, {k}] modulate={modulate}");
            }
        }
    }

    [Test]
    public void EpilogueMatchesTorchsGeluAndGatedResidualOnEveryPath([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads)
    {
        var options = Options(path, threads);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(4);
        foreach (var (s, t, n) in RowShapes)
        {
            var y = torch.randn([s, t, n], generator: gen) * 4;
            y.view(-1)[0] = -30f; // far tails: exp clamped, no inf / NaN
            if (y.numel() > 1) y.view(-1)[1] = 30f;
            var residual = torch.randn([s, t, n], generator: gen);
            var gate = torch.randn([s, n], generator: gen);
            foreach (var ops in new[]
            {
                new FusedLinearOps { Activation = FusedActivation.GeluTanh },
                new FusedLinearOps { Residual = residual, Gate = gate },
                new FusedLinearOps { Residual = residual },
                new FusedLinearOps { Activation = FusedActivation.GeluTanh, Residual = residual, Gate = gate },
            })
            {
                var expected = ops.ComposeEpilogue(y);
                var actual = y.clone();
                TorchIntegerGemm.ApplyEpilogue(actual, ops, options);
                var error = (actual - expected).abs();
                var allowed = expected.abs() * 4e-6 + 1e-6;
                Assert.That((error > allowed).any().item<bool>(), Is.False,
                    $"{path} [{s}, {t}, {n}] act={ops.Activation} residual={ops.Residual is not null} gate={ops.Gate is not null}: max error {MaxAbs(error):G3}");
                Assert.That(actual.isfinite().all().item<bool>(), Is.True);
            }
        }
    }

    [Test]
    public void FusedLinearEqualsPrologueThenLinearThenEpilogueBitForBit([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads,
        [Values("W8", "W4g16")] string config)
    {
        var options = Options(path, threads);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(5);
        int bits = config.StartsWith("W8") ? 8 : 4, group = config.Contains('g') ? 16 : 0;
        foreach (var (s, t, k0, n) in new[] { (1, 1, 75, 50), (2, 37, 203, 97), (3, 130, 64, 48) }) // 390 rows: several 128-row blocks
        {
            int k = group > 0 ? (k0 + group - 1) / group * group : k0; // grouped weights need whole groups
            var weight = torch.randn([n, k], generator: gen);
            using var quantized = QuantizedTensor.Quantize(weight, QuantSpec.Weight(bits, group));
            using var packed = IntegerLinearKernel.Pack(quantized);
            var x = torch.randn([s, t, k], generator: gen) * 2 + 0.3;
            var bias = torch.randn([n], generator: gen);
            var prologue = new FusedLinearOps { LayerNorm = true, Shift = torch.randn([s, k], generator: gen), Scale = torch.randn([s, k], generator: gen) * 0.5 };
            var residual = torch.randn([s, t, n], generator: gen);
            var epilogue = new FusedLinearOps { Activation = FusedActivation.GeluTanh, Residual = residual, Gate = torch.randn([s, n], generator: gen) };
            var all = new FusedLinearOps
            {
                LayerNorm = true, Shift = prologue.Shift, Scale = prologue.Scale,
                Activation = epilogue.Activation, Residual = epilogue.Residual, Gate = epilogue.Gate,
            };

            var fused = TorchIntegerGemm.Linear(x, packed, 8, bias, 1.0, options, all);
            var normed = TorchIntegerGemm.LayerNormModulate(x, prologue, options);
            var parts = TorchIntegerGemm.Linear(normed, packed, 8, bias, 1.0, options);
            TorchIntegerGemm.ApplyEpilogue(parts, epilogue, options);
            Assert.That(fused.shape, Is.EqualTo(new long[] { s, t, n }));
            Assert.That(TestTensors.Identical(fused, parts), Is.True, $"{path} {config} [{s}, {t}, {k}] → {n}: max diff {MaxAbs(fused - parts):G3}");
            Assert.That(TestTensors.Identical(residual, epilogue.Residual!), Is.True, "the residual is read, not written");
        }
    }

    [Test]
    public void BadOpsAreRefusedWithTypedErrorsBeforeAnyNativeCall()
    {
        using var scope = torch.NewDisposeScope();
        using var quantized = QuantizedTensor.Quantize(torch.randn(6, 8), QuantSpec.Weight(8));
        using var packed = IntegerLinearKernel.Pack(quantized);
        var x = torch.randn(2, 3, 8);
        ArgumentException Refused(FusedLinearOps ops) => Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(x, packed, 8, ops: ops))!;

        Assert.That(Refused(new FusedLinearOps { Shift = torch.zeros(2, 8) }).Message, Does.Contain("LayerNorm = true"));
        Assert.That(Refused(new FusedLinearOps { Gate = torch.zeros(2, 6) }).Message, Does.Contain("set Residual"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, Scale = torch.zeros(2, 7) }).Message, Does.Contain("Scale has shape [2, 7], expected [samples, 8]"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, Shift = torch.zeros(4, 8) }).Message, Does.Contain("4 samples").And.Contain("6 rows"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, Shift = torch.zeros(2, 8), Scale = torch.zeros(3, 8) }).Message, Does.Contain("Scale has 3 samples"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, Shift = torch.zeros(8, 2).t() }).Message, Does.Contain("contiguous"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, Shift = torch.zeros(2, 8, ScalarType.Float64) }).Message, Does.Contain("Float32"));
        Assert.That(Refused(new FusedLinearOps { Residual = torch.zeros(2, 3, 5) }).Message, Does.Contain("Residual has shape [2, 3, 5], expected the output's [2, 3, 6]"));
        Assert.That(Refused(new FusedLinearOps { LayerNorm = true, LayerNormEpsilon = 0 }).Message, Does.Contain("LayerNormEpsilon"));
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.LayerNormModulate(x, new FusedLinearOps()))!.Message, Does.Contain("LayerNorm is not set"));
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.ApplyEpilogue(torch.zeros(2, 3, 8), new FusedLinearOps { LayerNorm = true, Shift = torch.zeros(2, 8) }))!.Message,
            Does.Contain("epilogue only"));
    }

    [Test]
    public void FloatDiTBlockIsBitIdenticalToTheOfficialFormula()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = new DiTConfig { InputSize = 8, PatchSize = 2, InChannels = 3, HiddenSize = 32, Depth = 1, NumHeads = 4, NumClasses = 5 };
        using var model = DiTTests.RandomisedModel(config);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var block = (DiTBlock)modules["blocks.0"];
        nn.Module<Tensor, Tensor> M(string name) => (nn.Module<Tensor, Tensor>)modules["blocks.0." + name];
        var gen = new Generator(6);
        var x = torch.randn([2, 16, 32], generator: gen);
        var c = torch.randn([2, 32], generator: gen);

        // DiT's models.py, op for op: x + gate_msa·attn(modulate(norm1(x), shift_msa, scale_msa)), then the MLP likewise.
        var m = M("adaLN_modulation").call(c).chunk(6, dim: 1);
        Tensor Norm(Tensor h) => nn.functional.layer_norm(h, [32], null, null, 1e-6);
        var qkv = M("attn.qkv").call(DiTBlock.Modulate(Norm(x), m[0], m[1])).reshape(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4);
        var attn = M("attn.proj").call(nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(2, 16, 32));
        var expected = x + m[2].unsqueeze(1) * attn;
        var mlp = M("mlp.fc2").call(nn.functional.gelu(M("mlp.fc1").call(DiTBlock.Modulate(Norm(expected), m[3], m[4])), TorchSharp.Modules.GELU.Approximate.tanh));
        expected = expected + m[5].unsqueeze(1) * mlp;

        Assert.That(TestTensors.Identical(block.call(x, c), expected), Is.True, "float layers run the unfused ops, bit for bit");
    }

    [Test]
    public void QuantLinearForwardFusedRunsOneIntegerCallOrTheComposedOps()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(21);
        var linear = nn.Linear(48, 40);
        using var layer = new QuantLinear("fc", linear);
        var spec = QuantSpec.Weight(8);
        layer.SetWeightVersion(QuantizedTensor.Quantize(linear.weight!, spec));
        layer.DefaultConfig = LayerQuantConfig.Create(8, 8);
        var x = torch.randn(3, 10, 48);
        var ops = new FusedLinearOps
        {
            LayerNorm = true, Shift = torch.randn(3, 48), Scale = torch.randn(3, 48) * 0.3,
            Activation = FusedActivation.GeluTanh, Residual = torch.randn(3, 10, 40), Gate = torch.randn(3, 40),
        };
        var composed = layer.ForwardFused(x, ops); // no kernel: fake quantization between the TorchSharp ops
        using (var normed = ops.ComposePrologue(x))
        using (var y = layer.call(normed))
        using (var expected = ops.ComposeEpilogue(y))
            Assert.That(TestTensors.Identical(composed, expected), Is.True);

        using var kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
        layer.IntegerKernel = kernel;
        var fused = layer.ForwardFused(x, ops);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1), "one fused integer call");
        Assert.That(TestTensors.RelativeError(fused, composed), Is.LessThan(1e-4), "fused integer call vs its fake-quant simulation");

        var seen = new List<Tensor>();
        layer.Observer = new RecordingObserver(seen);
        var observed = layer.ForwardFused(x, ops);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2), "with an observer the layer is called on the composed input (and may still run on the kernel)");
        Assert.That(seen, Has.Count.EqualTo(1));
        using (var normed = ops.ComposePrologue(x))
            Assert.That(TestTensors.Identical(seen[0], normed), Is.True, "calibration observers see the modulated input, as in the unfused model");
        Assert.That(TestTensors.RelativeError(observed, composed), Is.LessThan(1e-4));
    }

    private sealed class RecordingObserver(List<Tensor> seen) : AdaTSQ.Abstractions.ILayerInputObserver
    {
        public void Observe(AdaTSQ.Abstractions.IQuantizableLayer layer, Tensor input, AdaTSQ.Abstractions.TimestepInfo? step) => seen.Add(input.detach().clone());
    }
}
