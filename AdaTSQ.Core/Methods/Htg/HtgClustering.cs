using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Htg;

/// <summary>
/// HTG's hierarchical timestep grouping: agglomerative clustering of a sequence of per-step vectors (the per-step channel
/// shifts z_t) into contiguous groups. It starts from T singleton clusters in step order and repeatedly merges the
/// adjacent pair whose centroids (mean z over the cluster) are closest in squared L2, until G clusters remain; ties go to
/// the earliest pair. Only adjacent clusters merge, so every group is a run of consecutive steps.
/// </summary>
public static class HtgClustering
{
    /// <summary>
    /// Groups the rows of <paramref name="vectors"/> <c>[T, d]</c> (row i = step i) into <paramref name="groups"/> runs;
    /// returns each run's first and last row index, in order. O(T²·d), fine for the tens to hundreds of steps of a sampler.
    /// </summary>
    public static IReadOnlyList<(int First, int Last)> Cluster(Tensor vectors, int groups, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        if (vectors.Dimensions != 2) throw new ArgumentException($"expected [steps, channels], got shape [{string.Join(", ", vectors.shape)}].", nameof(vectors));
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var rows = vectors.detach().to(ScalarType.Float64, torch.CPU).contiguous();
        int t = (int)rows.shape[0];
        int d = (int)rows.shape[1];
        var data = rows.data<double>().ToArray();
        var vs = Enumerable.Range(0, t).Select(i => data.AsSpan(i * d, d).ToArray()).ToList();
        return Cluster(vs, groups, cancellationToken);
    }

    /// <summary>As <see cref="Cluster(Tensor, int, CancellationToken)"/>, for vectors given as arrays (all the same length).</summary>
    public static IReadOnlyList<(int First, int Last)> Cluster(IReadOnlyList<double[]> vectors, int groups, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        ArgumentOutOfRangeException.ThrowIfLessThan(groups, 1);
        int t = vectors.Count;
        if (t == 0) return [];
        int d = vectors[0].Length;
        if (vectors.Any(v => v.Length != d)) throw new ArgumentException("every vector must have the same length.", nameof(vectors));
        // Each cluster: first, last row and the sum of its vectors (centroid = sum / count).
        var clusters = Enumerable.Range(0, t).Select(i => (First: i, Last: i, Sum: (double[])vectors[i].Clone())).ToList();
        while (clusters.Count > groups)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int best = -1;
            double bestDistance = double.PositiveInfinity;
            for (int i = 0; i + 1 < clusters.Count; i++)
            {
                double distance = SquaredDistance(clusters[i], clusters[i + 1]);
                if (distance < bestDistance)
                {
                    bestDistance = distance;
                    best = i;
                }
            }
            if (best < 0) best = 0; // all distances NaN: merge in order rather than loop forever
            var (a, b) = (clusters[best], clusters[best + 1]);
            var sum = new double[d];
            for (int j = 0; j < d; j++) sum[j] = a.Sum[j] + b.Sum[j];
            clusters[best] = (a.First, b.Last, sum);
            clusters.RemoveAt(best + 1);
        }
        return clusters.Select(c => (c.First, c.Last)).ToList();
    }

    private static double SquaredDistance((int First, int Last, double[] Sum) a, (int First, int Last, double[] Sum) b)
    {
        double na = a.Last - a.First + 1, nb = b.Last - b.First + 1, s = 0;
        for (int j = 0; j < a.Sum.Length; j++)
        {
            double diff = a.Sum[j] / na - b.Sum[j] / nb;
            s += diff * diff;
        }
        return s;
    }
}
