using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// ABI 5: the SmoothQuant input scale and the SVDQuant low-rank branch inside the integer linear call
/// (<see cref="LinearTransforms"/>), against the unfused composition: the prologue, <c>x̃ = · InputScale</c> in torch,
/// an ordinary integer call on x̃, <c>+ x̃·L2ᵀ·L1ᵀ</c> in torch, then the epilogue.
/// </summary>
[NonParallelizable]
public class FusedLowRankTests
{
    private static KernelOptions Options(string path, int threads)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        return new KernelOptions { Isa = isa, Threads = threads };
    }

    private static readonly string[] Paths = ["avx512vnni", "avxvnni", "avx2", "scalar", "managed"];

    private static double MaxAbs(Tensor t) => t.abs().max().item<float>();

    // W4A4 g64: 4-bit weights in groups of 64 with per-token × per-group (64) activations; W8A8: per channel × per token.
    [Test]
    public void FusedScaleAndBranchEqualTheUnfusedComposition([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads,
        [Values("W4A4g64", "W8A8")] string config, [Values(0, 16, 32)] int rank)
    {
        var options = Options(path, threads);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator((ulong)(31 + rank));
        bool w4 = config == "W4A4g64";
        int bits = w4 ? 4 : 8, group = w4 ? 64 : 0, abits = w4 ? 4 : 8;
        // Edge tiles: one row, rows not a multiple of 8 or of the 128-row task, N not a multiple of 48 / 16 / 8;
        // 390 rows cross several 128-row blocks.
        foreach (var (s, t, k0, n) in new[] { (1, 1, 64, 50), (2, 37, 203, 97), (3, 130, 128, 48), (1, 9, 75, 7) })
        {
            int k = w4 ? (k0 + 63) / 64 * 64 : k0;
            var weight = torch.randn([n, k], generator: gen);
            using var quantized = QuantizedTensor.Quantize(weight, QuantSpec.Weight(bits, group));
            using var packed = IntegerLinearKernel.Pack(quantized, group);
            var x = torch.randn([s, t, k], generator: gen) * 2 + 0.3;
            var bias = torch.randn([n], generator: gen);
            var transforms = new LinearTransforms
            {
                InputScale = torch.rand([k], generator: gen) * 2 + 0.25,
                LowRankDown = rank > 0 ? torch.randn([rank, k], generator: gen) * 0.2 : null,
                LowRankUp = rank > 0 ? torch.randn([n, rank], generator: gen) * 0.2 : null,
            };
            var shift = torch.randn([s, k], generator: gen);
            var scale = torch.randn([s, k], generator: gen) * 0.5;
            var residual = torch.randn([s, t, n], generator: gen);
            var gate = torch.randn([s, n], generator: gen);
            foreach (var (prologue, epilogue) in new[] { (false, false), (true, false), (false, true), (true, true) })
            {
                var pro = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale };
                var epi = new FusedLinearOps { Activation = FusedActivation.GeluTanh, Residual = residual, Gate = gate };
                var ops = new FusedLinearOps
                {
                    LayerNorm = prologue, Shift = prologue ? shift : null, Scale = prologue ? scale : null,
                    Activation = epilogue ? epi.Activation : FusedActivation.None, Residual = epilogue ? residual : null, Gate = epilogue ? gate : null,
                };
                string what = $"{path} {config} r={rank} [{s}, {t}, {k}] → {n} prologue={prologue} epilogue={epilogue}";

                var fused = TorchIntegerGemm.Linear(x, packed, abits, bias, 1.0, options, ops, group, transforms);

                // The unfused composition: the same native prologue / epilogue code, torch for the scale and the branch.
                var normed = prologue ? TorchIntegerGemm.LayerNormModulate(x, pro, options) : x;
                var xt = transforms.ComposeInput(normed);
                var y = TorchIntegerGemm.Linear(xt, packed, abits, bias, 1.0, options, null, group);
                var branch = transforms.ComposeBranch(xt);
                if (branch is not null) y = y + branch;
                if (epilogue) TorchIntegerGemm.ApplyEpilogue(y, epi, options);

                Assert.That(fused.shape, Is.EqualTo(new long[] { s, t, n }), what);
                if (rank == 0)
                {
                    // x̃ is one rounded product per element on both sides: the same codes, the same bits.
                    Assert.That(TestTensors.Identical(fused, y), Is.True, $"{what}: max diff {MaxAbs(fused - y):G3}");
                    continue;
                }
                // The quantized GEMM + bias is bit-identical (same x̃, same codes); only the branch's float sums differ in
                // order (K + r products; torch's matmul blocks them its own way). A float32 sum of L products errs by at
                // most L·u·Σ|products| (u = 2^-24), so the bound is (K + r)·u on |x̃|·|L2|ᵀ·|L1|ᵀ, times the epilogue's
                // Lipschitz factor (GELU-tanh ≤ 1.13, then |gate|), plus one rounding of the output itself.
                var absBranch = xt.abs().matmul(transforms.LowRankDown!.abs().t()).matmul(transforms.LowRankUp!.abs().t());
                var lipschitz = epilogue ? gate.abs().unsqueeze(1) * 1.13 + 0 : torch.ones(1);
                var allowed = absBranch * lipschitz * ((k + rank) * Math.Pow(2, -24)) + y.abs() * Math.Pow(2, -23) + 1e-7;
                var error = (fused - y).abs();
                Assert.That((error > allowed).any().item<bool>(), Is.False,
                    $"{what}: max error {MaxAbs(error):G3}, max allowed {MaxAbs(allowed):G3}, max |y| {MaxAbs(y):G3}");
                Assert.That(MaxAbs(error) / MaxAbs(y), Is.LessThan(1e-5), $"{what}: relative to the output");
            }
        }
    }

    [Test]
    public void BadTransformsAreRefusedWithTypedErrorsBeforeAnyNativeCall()
    {
        using var scope = torch.NewDisposeScope();
        using var quantized = QuantizedTensor.Quantize(torch.randn(6, 8), QuantSpec.Weight(8));
        using var packed = IntegerLinearKernel.Pack(quantized);
        var x = torch.randn(2, 3, 8);
        string Refused(LinearTransforms t) => Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(x, packed, 8, transforms: t))!.Message;
        Assert.That(Refused(new LinearTransforms { InputScale = torch.ones(7) }), Does.Contain("InputScale has shape [7], expected [8]"));
        Assert.That(Refused(new LinearTransforms { InputScale = torch.ones(8, ScalarType.Float64) }), Does.Contain("Float32"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(2, 8) }), Does.Contain("needs both LowRankDown"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(2, 7), LowRankUp = torch.ones(6, 2) }), Does.Contain("LowRankDown has shape [2, 7], expected [r, 8]"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(2, 8), LowRankUp = torch.ones(6, 3) }), Does.Contain("LowRankUp has shape [6, 3], expected [6, 2]"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(0, 8), LowRankUp = torch.ones(6, 0) }), Does.Contain("rank 0"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(1025, 8), LowRankUp = torch.ones(6, 1025) }), Does.Contain("1 to 1024"));
        Assert.That(Refused(new LinearTransforms { LowRankDown = torch.ones(8, 2).t(), LowRankUp = torch.ones(6, 2) }), Does.Contain("contiguous"));
    }

    // A QuantLinear with SVDQuant (smoothing + branch) on the kernels: one fused call, equal to its fake-quantized self.
    [Test]
    public void QuantLinearWithSvdQuantRunsTheBranchInsideTheIntegerCall([Values("W4A4g64", "W8A8")] string config, [Values(16, 32)] int rank)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(41);
        bool w4 = config == "W4A4g64";
        using var layer = new QuantLinear("fc", nn.Linear(128, 96));
        layer.SetInputSmoothing(torch.rand(128) * 2 + 0.25);
        layer.SetLowRankBranch(torch.randn(96, rank) * 0.05, torch.randn(rank, 128) * 0.05);
        var layerConfig = w4 ? new LayerQuantConfig(QuantSpec.Weight(4, 64), QuantSpec.Activation(4, 64)) : LayerQuantConfig.Create(8, 8);
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, layerConfig.Weight));
        layer.DefaultConfig = layerConfig;
        var x = torch.randn(2, 37, 128);
        var simulated = layer.call(x);
        using var kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
        layer.IntegerKernel = kernel;
        var integer = layer.call(x);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1), "one integer call, smoothing and branch inside it");
        Assert.That(TestTensors.RelativeError(integer, simulated), Is.LessThan(1e-5), $"{config} r={rank}");

        var ops = new FusedLinearOps
        {
            LayerNorm = true, Shift = torch.randn(2, 128) * 0.5, Scale = torch.randn(2, 128) * 0.3,
            Activation = FusedActivation.GeluTanh, Residual = torch.randn(2, 37, 96), Gate = torch.randn(2, 96),
        };
        var fused = layer.ForwardFused(x, ops);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2), "the fused call with smoothing and a branch runs on the kernels");
        layer.IntegerKernel = null;
        var composed = layer.ForwardFused(x, ops);
        Assert.That(TestTensors.RelativeError(fused, composed), Is.LessThan(1e-4), $"{config} r={rank}: fused integer call vs its fake-quant simulation");
    }
}

/// <summary>
/// ABI 5: QuaRot's Hadamard rotation in the native prologue (after LayerNorm + modulate and the input scale, before
/// quantization and the branch's down-projection), against the TorchSharp <c>HadamardRotation</c>.
/// </summary>
[NonParallelizable]
public class FusedRotationTests
{
    private static KernelOptions Options(string path, int threads)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        return new KernelOptions { Isa = isa, Threads = threads };
    }

    private static readonly string[] Paths = ["avx512vnni", "avxvnni", "avx2", "scalar", "managed"];

    private static double MaxAbs(Tensor t) => t.abs().max().item<float>();

    // (K, construction, block): a power of two (m = 1), 12 ⊗ 32 (Paley I), 20 ⊗ 4 (Paley I), 36 ⊗ 32 (Paley II), block-diagonal 3 × 32, 2 ⊗ 1.
    private static readonly (int K, global::AdaTSQ.Methods.QuaRot.HadamardConstruction C, int Block)[] Rotations =
    [
        (64, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.Kronecker, 0), (384, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.Kronecker, 0),
        (80, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.Kronecker, 0), (1152, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.Kronecker, 0),
        (96, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.BlockDiagonal, 32), (2, global::AdaTSQ.Methods.QuaRot.HadamardConstruction.Kronecker, 0),
    ];

    [Test]
    public void ThePrologueRotationIsTheTorchSharpRotation([ValueSource(nameof(Paths))] string path, [Values(1, 2)] int threads)
    {
        var options = Options(path, threads);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(51);
        foreach (var (k, construction, block) in Rotations)
            foreach (int? seed in new int?[] { 3, null })
            {
                using var rotation = global::AdaTSQ.Methods.QuaRot.HadamardRotation.Create(k, construction, block > 0 ? block : 64, seed);
                var fused = rotation.ToFusedRotation();
                var x = torch.randn([2, 5, k], generator: gen) * 3;
                var inv = torch.rand([k], generator: gen) + 0.5;
                var ops = new FusedLinearOps { LayerNorm = true, Shift = torch.randn([2, k], generator: gen), Scale = torch.randn([2, k], generator: gen) * 0.3 };
                string what = $"{path} {rotation.Description} K={k}";
                // The rotation alone, then after LayerNorm + modulate and the input scale.
                var alone = TorchIntegerGemm.Prologue(x, null, new LinearTransforms { Rotation = fused }, options);
                var expected = rotation.Rotate(x);
                Assert.That(TestTensors.Identical(fused.Compose(x), fused.Dense is null ? expected : fused.Compose(x)), Is.True, $"{what}: FusedRotation.Compose is the rotation");
                var all = TorchIntegerGemm.Prologue(x, ops, new LinearTransforms { InputScale = inv, Rotation = fused }, options);
                var expectedAll = rotation.Rotate(TorchIntegerGemm.LayerNormModulate(x, ops, options) * inv);
                foreach (var (actual, reference, name) in new[] { (alone, expected, "alone"), (all, expectedAll, "after LayerNorm + scale") })
                {
                    if (fused.Dense is null)
                    {
                        // Signs, butterflies and the division: the same float operations in the same order as torch's.
                        Assert.That(TestTensors.Identical(actual, reference), Is.True, $"{what} {name}: max diff {MaxAbs(actual - reference):G3}");
                        continue;
                    }
                    // H_m's m-term sums (exact ±1 products) run in another order than torch's matmul: float rounding.
                    double tolerance = (k / fused.Block + 2) * Math.Pow(2, -23) * MaxAbs(reference.abs()) + 1e-7;
                    Assert.That(MaxAbs(actual - reference), Is.LessThanOrEqualTo(tolerance), $"{what} {name}");
                }
            }
    }

    [Test]
    public void TheFusedCallWithARotationIsThePrologueThenAnOrdinaryCall([ValueSource(nameof(Paths))] string path, [Values("W4A4g64", "W8A8")] string config,
        [Values(0, 16)] int rank)
    {
        var options = Options(path, 2);
        using var scope = torch.NewDisposeScope();
        var gen = new Generator((ulong)(61 + rank));
        bool w4 = config == "W4A4g64";
        int bits = w4 ? 4 : 8, group = w4 ? 64 : 0, abits = w4 ? 4 : 8;
        foreach (var (s, t, k, n) in new[] { (2, 37, 384, 97), (1, 9, 128, 50) })
        {
            using var rotation = global::AdaTSQ.Methods.QuaRot.HadamardRotation.Create(k, seed: 5);
            var weight = torch.randn([n, k], generator: gen);
            using var quantized = QuantizedTensor.Quantize(weight, QuantSpec.Weight(bits, group));
            using var packed = IntegerLinearKernel.Pack(quantized, group);
            var x = torch.randn([s, t, k], generator: gen) * 2;
            var bias = torch.randn([n], generator: gen);
            var transforms = new LinearTransforms
            {
                InputScale = torch.rand([k], generator: gen) + 0.5,
                Rotation = rotation.ToFusedRotation(),
                LowRankDown = rank > 0 ? torch.randn([rank, k], generator: gen) * 0.2 : null,
                LowRankUp = rank > 0 ? torch.randn([n, rank], generator: gen) * 0.2 : null,
            };
            var ops = new FusedLinearOps
            {
                LayerNorm = true, Shift = torch.randn([s, k], generator: gen), Scale = torch.randn([s, k], generator: gen) * 0.5,
                Activation = FusedActivation.GeluTanh, Residual = torch.randn([s, t, n], generator: gen), Gate = torch.randn([s, n], generator: gen),
            };
            var fused = TorchIntegerGemm.Linear(x, packed, abits, bias, 1.0, options, ops, group, transforms);
            var pro = new FusedLinearOps { LayerNorm = true, Shift = ops.Shift, Scale = ops.Scale };
            var epi = new FusedLinearOps { Activation = ops.Activation, Residual = ops.Residual, Gate = ops.Gate };
            var xt = TorchIntegerGemm.Prologue(x, pro, new LinearTransforms { InputScale = transforms.InputScale, Rotation = transforms.Rotation }, options);
            var y = TorchIntegerGemm.Linear(xt, packed, abits, bias, 1.0, options, null, group);
            if (rank == 0)
            {
                TorchIntegerGemm.ApplyEpilogue(y, epi, options);
                Assert.That(TestTensors.Identical(fused, y), Is.True, $"{path} {config} K={k}: max diff {MaxAbs(fused - y):G3}");
                continue;
            }
            y = y + xt.matmul(transforms.LowRankDown!.t()).matmul(transforms.LowRankUp!.t());
            TorchIntegerGemm.ApplyEpilogue(y, epi, options);
            Assert.That(MaxAbs(fused - y) / MaxAbs(y), Is.LessThan(1e-5), $"{path} {config} r={rank} K={k}");
        }
    }

    [Test]
    public void BadRotationsAreRefusedWithTypedErrors()
    {
        using var scope = torch.NewDisposeScope();
        using var quantized = QuantizedTensor.Quantize(torch.randn(6, 8), QuantSpec.Weight(8));
        using var packed = IntegerLinearKernel.Pack(quantized);
        var x = torch.randn(2, 3, 8);
        string Refused(FusedRotation r) => Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Linear(x, packed, 8, transforms: new LinearTransforms { Rotation = r }))!.Message;
        Assert.That(Refused(new FusedRotation { Block = 3, Divisor = 1 }), Does.Contain("Block = 3 must be a power of two dividing K = 8"));
        Assert.That(Refused(new FusedRotation { Block = 16, Divisor = 1 }), Does.Contain("Block = 16"));
        Assert.That(Refused(new FusedRotation { Block = 8, Divisor = 0 }), Does.Contain("Divisor = 0"));
        Assert.That(Refused(new FusedRotation { Block = 4, Divisor = 1, Dense = torch.ones(3, 3) }), Does.Contain("Rotation.Dense has shape [3, 3], expected [2, 2]"));
        Assert.That(Refused(new FusedRotation { Block = 8, Divisor = 1, Signs = torch.ones(7) }), Does.Contain("Rotation.Signs has shape [7], expected [8]"));
        Assert.That(Assert.Throws<ArgumentException>(() => TorchIntegerGemm.Prologue(x, null, new LinearTransforms { LowRankDown = torch.ones(1, 8), LowRankUp = torch.ones(6, 1) }))!.Message,
            Does.Contain("not prologue work"));
    }

    // A QuantLinear with QuaRot (and SmoothQuant before it) on the kernels: one integer call, equal to its fake-quantized self.
    [Test]
    public void QuantLinearWithQuaRotRunsTheRotationInsideTheIntegerCall([Values("W4A4g64", "W8A8")] string config)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(71);
        bool w4 = config == "W4A4g64";
        using var layer = new QuantLinear("fc", nn.Linear(384, 96));
        layer.SetInputSmoothing(torch.rand(384) * 2 + 0.25);
        using (var rotation = global::AdaTSQ.Methods.QuaRot.HadamardRotation.Create(384, seed: 2)) layer.SetInputRotation(rotation);
        var layerConfig = w4 ? new LayerQuantConfig(QuantSpec.Weight(4, 64), QuantSpec.Activation(4, 64)) : LayerQuantConfig.Create(8, 8);
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, layerConfig.Weight));
        layer.DefaultConfig = layerConfig;
        var x = torch.randn(2, 37, 384);
        var simulated = layer.call(x);
        using var kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
        layer.IntegerKernel = kernel;
        var integer = layer.call(x);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1));
        // The H_12 factor's sums may round differently from torch's matmul, which can move an activation code at a
        // rounding tie: within 1e-4 (a code flip), and in practice far below.
        Assert.That(TestTensors.RelativeError(integer, simulated), Is.LessThan(1e-4), config);
        var ops = new FusedLinearOps { LayerNorm = true, Shift = torch.randn(2, 384) * 0.5, Scale = torch.randn(2, 384) * 0.3, Activation = FusedActivation.GeluTanh };
        var fused = layer.ForwardFused(x, ops);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2), "the LayerNorm prologue and the rotation in one integer call");
        Assert.That(kernel.FallbackCalls, Is.EqualTo(0));
        layer.IntegerKernel = null;
        var composed = layer.ForwardFused(x, ops);
        Assert.That(TestTensors.RelativeError(fused, composed), Is.LessThan(1e-3), config);
    }
}
