using AdaTSQ.Methods.Ptq4Dit;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Ptq4Dit;

/// <summary>SSC on hand-computed cases: Spearman's ρ (with ties), η = softmax(−ρ), and the calibrated salience Σ η_t s(X^(t)).</summary>
public class SpearmanCalibrationTests
{
    [Test]
    public void RhoOfKnownRankingsIsOneMinusOneAndSixTenths()
    {
        using var w = torch.tensor(new double[] { 0.1, 0.2, 0.3, 0.4 });
        using var x = torch.tensor(new double[,] { { 1, 2, 3, 4 }, { 9, 7, 5, 1 }, { 2, 1, 4, 3 } });
        var rho = SpearmanCalibration.Rho(x, w);
        // Row 3 ranks [2, 1, 4, 3] against [1, 2, 3, 4]: Σd² = 4, ρ = 1 − 6·4 / (4·(16 − 1)) = 0.6.
        Assert.That(rho, Is.EqualTo(new[] { 1.0, -1.0, 0.6 }).Within(1e-12));
    }

    [Test]
    public void TiesGetTheirAverageRankAsScipyDoes()
    {
        using var w = torch.tensor(new float[] { 1, 2, 3, 4 });
        using var x = torch.tensor(new float[] { 5, 5, 6, 7 });
        // Ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]: centred [−1, −1, .5, 1.5] and [−1.5, −.5, .5, 1.5];
        // covariance 4.5, variances 4.5 and 5 → ρ = 4.5 / √22.5 (scipy.stats.spearmanr gives 0.9486833).
        Assert.That(SpearmanCalibration.Rho(x, w).Single(), Is.EqualTo(4.5 / Math.Sqrt(22.5)).Within(1e-12));
        using var constant = torch.ones(4);
        Assert.That(SpearmanCalibration.Rho(constant, w).Single(), Is.Zero, "no rank correlation for a constant salience");
    }

    [Test]
    public void StepWeightsAreTheSoftmaxOfMinusRho()
    {
        var eta = SpearmanCalibration.StepWeights([1.0, -1.0, 0.6]);
        double z = Math.Exp(-1) + Math.Exp(1) + Math.Exp(-0.6);
        Assert.That(eta, Is.EqualTo(new[] { Math.Exp(-1) / z, Math.Exp(1) / z, Math.Exp(-0.6) / z }).Within(1e-12));
        Assert.That(eta[1], Is.GreaterThan(eta[2]).And.GreaterThan(eta[0]), "the least correlated step weighs most");
        Assert.Throws<ArgumentException>(() => SpearmanCalibration.StepWeights([]));
        Assert.Throws<ArgumentException>(() => SpearmanCalibration.StepWeights([double.NaN]));
    }

    [Test]
    public void TheCalibratedSalienceIsTheEtaWeightedMixtureOfTheSteps()
    {
        using var w = torch.tensor(new double[] { 0.1, 0.2, 0.3, 0.4 });
        double[,] steps = { { 1, 2, 3, 4 }, { 9, 7, 5, 1 }, { 2, 1, 4, 3 } };
        using var x = torch.tensor(steps);
        using var result = SpearmanCalibration.Calibrate(x, w);
        double z = Math.Exp(-1) + Math.Exp(1) + Math.Exp(-0.6);
        double[] eta = [Math.Exp(-1) / z, Math.Exp(1) / z, Math.Exp(-0.6) / z];
        var expected = Enumerable.Range(0, 4).Select(j => eta[0] * steps[0, j] + eta[1] * steps[1, j] + eta[2] * steps[2, j]).ToArray();
        Assert.That(result.Rho, Is.EqualTo(new[] { 1.0, -1.0, 0.6 }).Within(1e-12));
        Assert.That(result.Eta, Is.EqualTo(eta).Within(1e-12));
        Assert.That(result.Salience.data<double>().ToArray(), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void MismatchedShapesAreRefused()
    {
        using var w = torch.ones(4);
        using var x = torch.ones(2, 5);
        Assert.That(Assert.Throws<ArgumentException>(() => SpearmanCalibration.Rho(x, w))!.Message, Does.Contain("[2, 5]").And.Contain("[4]"));
        using var one = torch.ones(1);
        Assert.Throws<ArgumentException>(() => SpearmanCalibration.Rho(one, one));
    }
}
