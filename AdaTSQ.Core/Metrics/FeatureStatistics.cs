using AdaTSQ.IO;
using MathNet.Numerics.LinearAlgebra;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Metrics;

/// <summary>
/// Mean and covariance of a set of image features (e.g. ResNet-18 embeddings of generated or real
/// images): what a Fréchet distance compares. Saved as safetensors so that the statistics of a real
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

    /// <summary>Writes the statistics as a safetensors file (float64 "mean" and "covariance", count and source in the metadata).</summary>
    public void Save(string path)
    {
        using var mean = torch.tensor(Mean, dtype: ScalarType.Float64);
        using var cov = torch.tensor(Covariance.Cast<double>().ToArray(), [Dimension, Dimension], dtype: ScalarType.Float64);
        SafeTensors.Save(path, [("mean", mean), ("covariance", cov)], new Dictionary<string, string>
        {
            ["format"] = "AdaTSQ.NET feature statistics",
            ["count"] = Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["source"] = Source,
        });
    }

    /// <summary>Reads statistics written by <see cref="Save"/>.</summary>
    public static FeatureStatistics Load(string path)
    {
        var (_, meta, _) = SafeTensors.ReadHeader(path);
        var tensors = SafeTensors.Load(path);
        try
        {
            if (!tensors.TryGetValue("mean", out var mean) || !tensors.TryGetValue("covariance", out var cov))
                throw new CheckpointException(path, "it holds no 'mean' and 'covariance' tensors: not a feature statistics file.");
            int d = (int)mean.shape[0];
            if (!cov.shape.SequenceEqual(new long[] { d, d })) throw new CheckpointException(path, $"covariance is [{string.Join(", ", cov.shape)}], expected [{d}, {d}].");
            var flat = cov.to(ScalarType.Float64).data<double>().ToArray();
            var matrix = new double[d, d];
            Buffer.BlockCopy(flat, 0, matrix, 0, flat.Length * sizeof(double));
            int count = meta.TryGetValue("count", out var c) ? int.Parse(c, System.Globalization.CultureInfo.InvariantCulture) : 0;
            return new FeatureStatistics(mean.to(ScalarType.Float64).data<double>().ToArray(), matrix, count, meta.GetValueOrDefault("source", ""));
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

}
