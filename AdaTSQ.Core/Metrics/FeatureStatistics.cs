using System.Text.Json;
using MathNet.Numerics.LinearAlgebra;

namespace AdaTSQ.Metrics;

/// <summary>
/// Mean and covariance of a set of image features (e.g. ResNet-18 embeddings of generated or real
/// images): what a Fréchet distance compares. Serialisable to JSON so that the statistics of a real
/// test set can ship with the repository.
/// </summary>
public sealed class FeatureStatistics
{
    /// <summary>Creates statistics from a mean and a covariance.</summary>
    public FeatureStatistics(double[] mean, double[,] covariance, int count, string source = "")
    {
        int d = mean.Length;
        if (covariance.GetLength(0) != d || covariance.GetLength(1) != d)
            throw new ArgumentException($"covariance is {covariance.GetLength(0)}×{covariance.GetLength(1)} for a {d}-dimensional mean.");
        Mean = mean;
        Covariance = covariance;
        Count = count;
        Source = source;
    }

    /// <summary>Mean feature vector.</summary>
    public double[] Mean { get; }
    /// <summary>Covariance (unbiased, n − 1).</summary>
    public double[,] Covariance { get; }
    /// <summary>Number of feature vectors.</summary>
    public int Count { get; }
    /// <summary>What the features were computed from.</summary>
    public string Source { get; }
    /// <summary>Feature dimension.</summary>
    public int Dimension => Mean.Length;

    /// <summary>Statistics of the rows of <paramref name="features"/> (n × d, n ≥ 2).</summary>
    public static FeatureStatistics FromFeatures(double[,] features, string source = "")
    {
        int n = features.GetLength(0), d = features.GetLength(1);
        if (n < 2) throw new ArgumentException($"a covariance needs at least 2 feature vectors, got {n}.");
        var m = Matrix<double>.Build.DenseOfArray(features);
        var mean = m.ColumnSums() / n;
        var centered = m - Matrix<double>.Build.Dense(n, d, (_, j) => mean[j]);
        var cov = centered.TransposeThisAndMultiply(centered) / (n - 1);
        return new FeatureStatistics(mean.ToArray(), cov.ToArray(), n, source);
    }

    /// <summary>Writes the statistics as JSON.</summary>
    public void Save(string path)
    {
        var dto = new Dto(Source, Count, Mean, Enumerable.Range(0, Dimension).Select(i => Enumerable.Range(0, Dimension).Select(j => Covariance[i, j]).ToArray()).ToArray());
        string temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(dto));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads statistics written by <see cref="Save"/>.</summary>
    public static FeatureStatistics Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"feature statistics file '{path}' does not exist.", path);
        var dto = JsonSerializer.Deserialize<Dto>(File.ReadAllText(path)) ?? throw new InvalidDataException($"'{path}' holds no feature statistics.");
        int d = dto.Mean.Length;
        if (dto.Covariance.Length != d || dto.Covariance.Any(r => r.Length != d))
            throw new InvalidDataException($"'{path}': covariance is not {d}×{d}.");
        var cov = new double[d, d];
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) cov[i, j] = dto.Covariance[i][j];
        return new FeatureStatistics(dto.Mean, cov, dto.Count, dto.Source);
    }

    private sealed record Dto(string Source, int Count, double[] Mean, double[][] Covariance);
}
