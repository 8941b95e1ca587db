using AdaTSQ.Methods.QuaRot;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.QuaRot;

/// <summary>The Hadamard constructions and the fast rotation: H·Hᵀ = n·I, R orthonormal, the fast transform equals the dense product.</summary>
public class HadamardTests
{
    private static double MaxAbsDeviationFromScaledIdentity(Tensor h, double scale)
    {
        using var scope = torch.NewDisposeScope();
        var gram = h.mm(h.t());
        return (gram - torch.eye(h.shape[0], dtype: ScalarType.Float64) * scale).abs().max().item<double>();
    }

    [TestCase(12)] // Paley I, q = 11
    [TestCase(20)] // Paley I, q = 19
    [TestCase(28)] // Paley II, q = 13
    [TestCase(36)] // Paley II, q = 17
    [TestCase(44)] // Paley I, q = 43
    [TestCase(52)] // Paley II with q = 25 is not built (25 is not prime): null
    [TestCase(60)] // Paley I, q = 59
    [TestCase(64)] // Sylvester
    public void KnownOrdersAreHadamardMatrices(int order)
    {
        using var h = Hadamard.TryCreate(order);
        if (order == 52)
        {
            Assert.That(h, Is.Null);
            return;
        }
        Assert.That(h, Is.Not.Null);
        Assert.That(h!.shape, Is.EqualTo(new long[] { order, order }));
        using (var abs = h.abs()) using (var ones = abs.eq(1).all()) Assert.That(ones.item<bool>(), Is.True, "entries are ±1");
        Assert.That(MaxAbsDeviationFromScaledIdentity(h, order), Is.EqualTo(0), "H·Hᵀ = n·I");
    }

    [TestCase(16, 1, 16)]
    [TestCase(192, 12, 16)]
    [TestCase(768, 12, 64)]
    [TestCase(1152, 36, 32)]
    [TestCase(4608, 36, 128)]
    [TestCase(104, 104, 1)] // 13·8: Paley I with q = 103 (52 = Paley II with q = 25 is not built)
    public void WidthsFactorAsAHadamardOrderTimesAPowerOfTwo(long size, int m, long powerOfTwo)
    {
        Assert.That(Hadamard.Factor(size, out int actualM, out long actualP), Is.True);
        Assert.That((actualM, actualP), Is.EqualTo((m, powerOfTwo)));
    }

    [TestCase(26)]
    [TestCase(3)]
    [TestCase(0)]
    public void WidthsWithoutAConstructionAreReported(long size)
    {
        Assert.That(Hadamard.Factor(size, out _, out _), Is.False);
        var e = Assert.Throws<ArgumentException>(() => HadamardRotation.Create(size));
        Assert.That(e!.Message, Does.Contain(size.ToString()));
    }

    [TestCase(16)]
    [TestCase(64)]
    [TestCase(192)]
    [TestCase(768)]
    [TestCase(1152)]
    public void TheDenseKroneckerMatrixIsOrthonormal(long size)
    {
        using var r = Hadamard.Orthonormal(size);
        Assert.That(MaxAbsDeviationFromScaledIdentity(r, 1), Is.LessThan(1e-6));
    }

    [TestCase(16, HadamardConstruction.Kronecker, 64)]
    [TestCase(192, HadamardConstruction.Kronecker, 64)]
    [TestCase(768, HadamardConstruction.Kronecker, 64)]
    [TestCase(1152, HadamardConstruction.Kronecker, 64)]
    [TestCase(4608, HadamardConstruction.Kronecker, 64)]
    [TestCase(192, HadamardConstruction.BlockDiagonal, 64)]
    [TestCase(1152, HadamardConstruction.BlockDiagonal, 128)]
    public void TheRotationIsOrthonormal(long size, HadamardConstruction construction, int block)
    {
        using var scope = torch.NewDisposeScope();
        using var rotation = HadamardRotation.Create(size, construction, block, seed: 3);
        // Rotate(M) = M·Rᵀ, so Rotate(R) = R·Rᵀ: O(K² log K) instead of a dense K³ product (K = 4608).
        var r = rotation.Matrix();
        var gram = rotation.Rotate(r);
        double deviation = (gram - torch.eye(size, dtype: ScalarType.Float64)).abs().max().item<double>();
        Assert.That(deviation, Is.LessThan(1e-6), rotation.Description);
        double magnitude = construction == HadamardConstruction.BlockDiagonal ? 1 / Math.Sqrt(block) : 1 / Math.Sqrt(size);
        var nonZero = r.abs().masked_select(r.abs() > 1e-12);
        Assert.That((nonZero - magnitude).abs().max().item<double>(), Is.LessThan(1e-12), "every non-zero entry is ±1/√n");
        Assert.That(nonZero.numel(), Is.EqualTo(construction == HadamardConstruction.BlockDiagonal ? size * block : size * size));
    }

    [TestCase(192, null)]
    [TestCase(192, 7)]
    [TestCase(1152, 7)]
    [TestCase(256, null)]
    public void TheFastTransformEqualsTheDenseProduct(long size, int? seed)
    {
        using var scope = torch.NewDisposeScope();
        using var rotation = HadamardRotation.Create(size, seed: seed);
        var dense = Hadamard.Orthonormal(size);
        if (seed is not null)
        {
            // R = H·D: recover D from the rotation of the identity's first row... D_jj = sign of R_0j · H_0j.
            var r = rotation.Matrix();
            var d = (r[0] * dense[0]).sign();
            dense = dense * d.unsqueeze(0);
            Assert.That(d.abs().eq(1).all().item<bool>(), Is.True);
            Assert.That((d < 0).any().item<bool>(), Is.True, "some signs are flipped");
        }
        var x = TestTensors.Randn(5, 3, 4, size).to(ScalarType.Float64);
        var fast = rotation.Rotate(x);
        var reference = x.matmul(dense.t());
        Assert.That(TestTensors.RelativeError(fast, reference), Is.LessThan(1e-12));
        var x32 = x.to(ScalarType.Float32);
        Assert.That(TestTensors.RelativeError(rotation.Rotate(x32), reference), Is.LessThan(1e-6), "float32 inputs");
    }

    [Test]
    public void TheFastWalshHadamardTransformIsSylvestersProduct()
    {
        using var scope = torch.NewDisposeScope();
        var x = TestTensors.Randn(2, 7, 32).to(ScalarType.Float64);
        Assert.That(TestTensors.RelativeError(FastWalshHadamard.Transform(x), x.mm(Hadamard.Sylvester(32))), Is.LessThan(1e-14));
        Assert.Throws<ArgumentException>(() => FastWalshHadamard.Transform(torch.zeros(2, 12)));
    }

    [Test]
    public void TheSignsFollowTheSeed()
    {
        using var scope = torch.NewDisposeScope();
        using var a = HadamardRotation.Create(64, seed: 1);
        using var b = HadamardRotation.Create(64, seed: 1);
        using var c = HadamardRotation.Create(64, seed: 2);
        Assert.That(TestTensors.Identical(a.Matrix(), b.Matrix()), Is.True);
        Assert.That(TestTensors.Identical(a.Matrix(), c.Matrix()), Is.False);
        Assert.That(a.Description, Does.Contain("seed 1"));
    }

    [Test]
    public void BadBlockSizesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => HadamardRotation.Create(192, HadamardConstruction.BlockDiagonal, 48));
        Assert.Throws<ArgumentException>(() => HadamardRotation.Create(192, HadamardConstruction.BlockDiagonal, 128));
        Assert.Throws<ArgumentException>(() => HadamardRotation.Create(64, (HadamardConstruction)7));
    }
}
