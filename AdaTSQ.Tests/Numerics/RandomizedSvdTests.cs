using System.Diagnostics;
using AdaTSQ.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Numerics;

public class RandomizedSvdTests
{
    /// <summary>An m×n matrix with singular values σ_i = decay^i (orthonormal factors from QR of seeded Gaussians).</summary>
    private static Tensor DecayingSpectrum(long m, long n, double decay, long seed, ScalarType dtype = ScalarType.Float64)
    {
        using var scope = torch.NewDisposeScope();
        long k = Math.Min(m, n);
        var (u, _) = torch.linalg.qr(TestTensors.Randn(seed, m, k).to(ScalarType.Float64));
        var (v, _) = torch.linalg.qr(TestTensors.Randn(seed + 1, n, k).to(ScalarType.Float64));
        var s = torch.pow(decay, torch.arange(k, dtype: ScalarType.Float64));
        return (u * s.unsqueeze(0)).mm(v.t()).to(dtype).MoveToOuterDisposeScope();
    }

    // A slower decay leaves more of the tail in the sketch: the singular values are found less exactly (q = 2).
    [TestCase(0.9, ScalarType.Float64, 1e-4)]
    [TestCase(0.95, ScalarType.Float32, 2e-3)]
    public void SingularValuesAndReconstructionErrorMatchTheExactSvd(double decay, ScalarType dtype, double valueTolerance)
    {
        using var a = DecayingSpectrum(300, 200, decay, seed: 1);
        const int rank = 16;
        using var exact = TruncatedSvd.Exact(a, rank);
        using var approx = RandomizedSvd.Compute(a, rank, seed: 7, dtype: dtype);
        Assert.That(approx.U.shape, Is.EqualTo(new long[] { 300, rank }));
        Assert.That(approx.Vh.shape, Is.EqualTo(new long[] { rank, 200 }));
        Assert.That(approx.S.dtype, Is.EqualTo(dtype));
        Assert.That(TestTensors.RelativeError(approx.S, exact.S), Is.LessThan(valueTolerance));
        using var bestResidual = a - exact.Reconstruct();
        using var residual = a - approx.Reconstruct().to(ScalarType.Float64);
        double optimal = bestResidual.norm().item<double>(), found = residual.norm().item<double>();
        Assert.That(found, Is.LessThan(optimal * 1.001), $"rank-{rank} error {found:G6} against the optimal {optimal:G6}");
        // Orthonormal factors.
        using var gram = approx.U.t().mm(approx.U).to(ScalarType.Float64);
        using var eye = torch.eye(rank, dtype: ScalarType.Float64);
        Assert.That((gram - eye).abs().max().item<double>(), Is.LessThan(1e-4));
    }

    [Test]
    public void TheSameSeedGivesTheSameResultAndAnotherSeedStillConverges()
    {
        using var a = DecayingSpectrum(120, 80, 0.8, seed: 3, dtype: ScalarType.Float32);
        using var first = RandomizedSvd.Compute(a, 8, seed: 5);
        using var again = RandomizedSvd.Compute(a, 8, seed: 5);
        using var other = RandomizedSvd.Compute(a, 8, seed: 6);
        Assert.That(TestTensors.Identical(first.U, again.U) && TestTensors.Identical(first.S, again.S) && TestTensors.Identical(first.Vh, again.Vh), Is.True);
        Assert.That(TestTensors.RelativeError(other.S, first.S), Is.LessThan(1e-5));
    }

    [Test]
    public void RankZeroIsEmptyAndBadArgumentsAreRefused()
    {
        using var a = TestTensors.Randn(1, 10, 6);
        using var none = RandomizedSvd.Compute(a, 0);
        Assert.That(none.Rank, Is.Zero);
        using var zero = none.Reconstruct();
        Assert.That(zero.abs().max().item<float>(), Is.Zero);
        // r + p above min(m, n) is capped: the full rank comes out exact.
        using var full = RandomizedSvd.Compute(a, 6, dtype: ScalarType.Float64);
        Assert.That(TestTensors.RelativeError(full.Reconstruct(), a), Is.LessThan(1e-10));
        Assert.Throws<ArgumentException>(() => RandomizedSvd.Compute(a, 7));
        Assert.Throws<ArgumentException>(() => RandomizedSvd.Compute(a, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => RandomizedSvd.Compute(a, 2, oversampling: -1));
        Assert.Throws<ArgumentException>(() => RandomizedSvd.Compute(a, 2, dtype: ScalarType.Float16));
        using var vector = torch.ones(5);
        Assert.Throws<ArgumentException>(() => RandomizedSvd.Compute(vector, 1));
    }

    /// <summary>Speed against the full SVD on a DiT-XL-sized weight (4608×1152); printed, not asserted.</summary>
    [Test]
    [Category("Slow")]
    public void SpeedAgainstTheFullSvdOnA4608By1152Matrix()
    {
        using var a = DecayingSpectrum(4608, 1152, 0.995, seed: 11, dtype: ScalarType.Float32);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
        {
            var clock = Stopwatch.StartNew();
            using (var exact = TruncatedSvd.Exact(a, 32, dtype)) { }
            double full = clock.Elapsed.TotalSeconds;
            clock.Restart();
            using var approx = RandomizedSvd.Compute(a, 32, dtype: dtype);
            double randomized = clock.Elapsed.TotalSeconds;
            TestContext.Out.WriteLine($"4608×1152 {dtype}, rank 32 (p = 10, q = 2), {Environment.ProcessorCount} cores, {torch.get_num_threads()} torch threads: full SVD {full:F2} s, randomized {randomized:F3} s ({full / randomized:F0}×)");
        }
    }
}
