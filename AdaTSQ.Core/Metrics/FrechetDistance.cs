using MathNet.Numerics.LinearAlgebra;

namespace AdaTSQ.Metrics;

/// <summary>
/// The Fréchet distance between two Gaussians fitted to feature sets (the quantity behind FID):
/// d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2·(Σ₁Σ₂)^{1/2}). The trace of the matrix square root is computed as
/// Σ √λ_i over the eigenvalues of the symmetric positive semi-definite Σ₁^{1/2} Σ₂ Σ₁^{1/2} (negative
/// round-off eigenvalues clamped to 0), which is stable without the complex parts scipy's sqrtm can
/// produce. With ResNet-18 features this is "FID (ResNet-18 features)", not Inception FID.
/// </summary>
public static class FrechetDistance
{
    /// <summary>d² between the two sets of statistics (same dimension).</summary>
    public static double Compute(FeatureStatistics a, FeatureStatistics b)
    {
        if (a.Dimension != b.Dimension) throw new ArgumentException($"feature dimensions differ: {a.Dimension} vs {b.Dimension}.");
        var mu1 = Vector<double>.Build.DenseOfArray(a.Mean);
        var mu2 = Vector<double>.Build.DenseOfArray(b.Mean);
        var s1 = Matrix<double>.Build.DenseOfArray(a.Covariance);
        var s2 = Matrix<double>.Build.DenseOfArray(b.Covariance);
        double meanTerm = (mu1 - mu2).DotProduct(mu1 - mu2);
        var sqrtS1 = SymmetricSqrt(s1);
        var inner = sqrtS1 * s2 * sqrtS1;
        inner = (inner + inner.Transpose()) / 2;
        double traceSqrt = inner.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric).EigenValues.Sum(e => Math.Sqrt(Math.Max(e.Real, 0)));
        return meanTerm + s1.Trace() + s2.Trace() - 2 * traceSqrt;
    }

    /// <summary>The principal square root of a symmetric positive semi-definite matrix.</summary>
    public static Matrix<double> SymmetricSqrt(Matrix<double> m)
    {
        var sym = (m + m.Transpose()) / 2;
        var evd = sym.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric);
        var sqrtValues = Vector<double>.Build.Dense(evd.EigenValues.Count, i => Math.Sqrt(Math.Max(evd.EigenValues[i].Real, 0)));
        return evd.EigenVectors * Matrix<double>.Build.DenseOfDiagonalVector(sqrtValues) * evd.EigenVectors.Transpose();
    }
}
