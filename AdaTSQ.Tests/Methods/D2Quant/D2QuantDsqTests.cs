using AdaTSQ.Methods.D2Quant;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.D2Quant;

/// <summary>D²Quant's dual-scale quantizer: known values, monotone alternation, and the gain over RTN with column outliers.</summary>
public class D2QuantDsqTests
{
    private static double RelativeSquaredError(Tensor approx, Tensor w)
    {
        using var scope = torch.NewDisposeScope();
        var d = approx.to(ScalarType.Float64) - w.to(ScalarType.Float64);
        return d.square().sum().item<double>() / w.to(ScalarType.Float64).square().sum().item<double>();
    }

    // A weight whose columns 0..outliers-1 are `factor` times larger than the rest (input channels with outlier weights).
    private static Tensor WithColumnOutliers(long seed, int rows, int cols, int outliers, float factor)
    {
        using var scope = torch.NewDisposeScope();
        var w = torch.randn([rows, cols], generator: new Generator((ulong)seed)) * 0.05f;
        var scale = torch.ones(cols);
        for (int i = 0; i < outliers; i++) scale[i * (cols / outliers)] = factor;
        return (w * scale.unsqueeze(0)).MoveToOuterDisposeScope();
    }

    [Test]
    public void ColumnsThatDifferOnlyInScaleAreReconstructedExactlyWhereRtnLosesTheSmallColumn()
    {
        // W = [[4, 1], [4, −1]] at 2 bits per output channel (levels −1, 0, 1 times the row scale). RTN: row scale 4, the
        // second column rounds to 0 → error 2 / 34. With s_c = (1.6, 0.4), W / s_c = [[2.5, 2.5], [2.5, −2.5]] is exactly on
        // the grid, so Q̂ · diag(s_c) = W.
        using var w = torch.tensor(new float[] { 4, 1, 4, -1 }).reshape(2, 2);
        var spec = QuantSpec.Weight(2);
        using var fit = DualScaleQuantizer.Fit(w, spec, rounds: 3);
        Assert.That(fit.RtnRelativeError, Is.EqualTo(2.0 / 34).Within(1e-9));
        using var rtn = FakeQuantizer.QuantizeDequantize(w, spec);
        Assert.That(RelativeSquaredError(rtn, w), Is.EqualTo(2.0 / 34).Within(1e-9), "RTN's error as computed by the library's quantizer");
        using var reconstructed = fit.Reconstruct();
        Assert.That(RelativeSquaredError(reconstructed, w), Is.LessThan(1e-12));
        Assert.That(fit.RelativeErrors[^1], Is.LessThan(1e-12));
        using var ratio = fit.ColumnScale[0] / fit.ColumnScale[1];
        Assert.That(ratio.item<float>(), Is.EqualTo(4f).Within(1e-5), "s_c is fixed up to a common factor: 4 : 1");
        using var codes = fit.Quantized.UnpackedCodes();
        Assert.That(codes.to(ScalarType.Int32).data<int>().ToArray(), Is.EqualTo(new[] { 1, 1, 1, -1 }));
    }

    [Test]
    public void WithoutRoundsAndWithoutOutliersItIsRoundToNearest()
    {
        // Equal column magnitudes: every start s_c is ~1, and the reconstruction error is RTN's (never above it).
        using var w = TestTensors.Randn(21, 16, 128);
        var spec = QuantSpec.Weight(4, 64);
        using var fit = DualScaleQuantizer.Fit(w, spec, rounds: 0);
        Assert.That(fit.RelativeErrors, Has.Count.EqualTo(1));
        Assert.That(fit.RelativeErrors[0], Is.LessThanOrEqualTo(fit.RtnRelativeError));
        using var rtn = FakeQuantizer.QuantizeDequantize(w, spec);
        Assert.That(fit.RtnRelativeError, Is.EqualTo(RelativeSquaredError(rtn, w)).Within(1e-9));
    }

    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void TheAlternationNeverIncreasesTheErrorAndBeatsRtnOnColumnOutliers(int bits)
    {
        using var w = WithColumnOutliers(seed: 11, rows: 96, cols: 256, outliers: 4, factor: 12f);
        var spec = QuantSpec.Weight(bits, 128);
        using var fit = DualScaleQuantizer.Fit(w, spec, rounds: 15);
        var e = fit.RelativeErrors;
        for (int i = 1; i < e.Count; i++) Assert.That(e[i], Is.LessThanOrEqualTo(e[i - 1]), $"step {i}: {e[i]} after {e[i - 1]}");
        using var rtn = FakeQuantizer.QuantizeDequantize(w, spec);
        double rtnError = RelativeSquaredError(rtn, w);
        using var reconstructed = fit.Reconstruct();
        double dsqError = RelativeSquaredError(reconstructed, w);
        TestContext.Out.WriteLine($"W{bits} g128, 4 outlier columns ×12: RTN {rtnError:G4}, DSQ start {e[0]:G4}, after {(e.Count - 1) / 2} rounds {dsqError:G4}");
        Assert.That(dsqError, Is.EqualTo(e[^1]).Within(1e-6 * Math.Max(e[^1], 1e-12)), "the reported error is the reconstruction's");
        if (bits <= 3) Assert.That(dsqError, Is.LessThan(0.8 * rtnError), "DSQ clearly beats RTN at 2–3 bits");
        else Assert.That(dsqError, Is.LessThanOrEqualTo(rtnError));
    }

    [Test]
    public void AlternatingImprovesOnItsStartOnOutlierColumns()
    {
        using var w = WithColumnOutliers(seed: 12, rows: 64, cols: 256, outliers: 8, factor: 8f);
        using var fit = DualScaleQuantizer.Fit(w, QuantSpec.Weight(3, 128), rounds: 15);
        Assert.That(fit.RelativeErrors[^1], Is.LessThan(fit.RelativeErrors[0]), "the rounds themselves lower the error, not just the start");
    }

    [Test]
    public void HonoursCancellationAndRefusesFullPrecision()
    {
        using var w = TestTensors.Randn(3, 8, 64);
        Assert.Throws<OperationCanceledException>(() => DualScaleQuantizer.Fit(w, QuantSpec.Weight(3), 5, 0, new CancellationToken(canceled: true)));
        Assert.Throws<ArgumentException>(() => DualScaleQuantizer.Fit(w, QuantSpec.FullPrecision, 5));
    }
}
