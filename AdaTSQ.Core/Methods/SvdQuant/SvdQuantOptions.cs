namespace AdaTSQ.Methods.SvdQuant;

/// <summary>
/// Options of <see cref="SvdQuantTransform"/> (SVDQuant, Li et al., ICLR 2025, arXiv 2411.05007). The defaults follow the
/// paper where it states one (rank 32, smoothing by per-channel maxima) and Halko et al. (2011) for the randomized SVD.
/// </summary>
public sealed record SvdQuantOptions
{
    /// <summary>The default grid of migration strengths α: 0, 0.1, …, 1.</summary>
    public static IReadOnlyList<double> DefaultAlphas { get; } = Enumerable.Range(0, 11).Select(i => i / 10.0).ToArray();

    /// <summary>Rank r of the low-rank branch <c>L1 · L2</c> (paper: 32). 0 = smoothing only, no branch.</summary>
    public int Rank { get; init; } = 32;

    /// <summary>
    /// The migration strengths α searched per layer, for the smoothing factors
    /// <c>λ_j = max|X_j|^α / max|W_j|^(1−α)</c> (default <see cref="DefaultAlphas"/>). Each must be in [0, 1].
    /// </summary>
    public IReadOnlyList<double> Alphas { get; init; } = DefaultAlphas;

    /// <summary>Also try λ = 1 (no smoothing) in the search (default true; deepcompressor's grid holds it too).</summary>
    public bool IncludeUnsmoothed { get; init; } = true;

    /// <summary>Use the exact SVD (<c>torch.linalg.svd</c>) instead of the randomized one (default false).</summary>
    public bool ExactSvd { get; init; }

    /// <summary>Oversampling p of the randomized SVD (default 10).</summary>
    public int Oversampling { get; init; } = 10;

    /// <summary>Power iterations q of the randomized SVD (default 2).</summary>
    public int PowerIterations { get; init; } = 2;

    /// <summary>Seed of the randomized SVD's Gaussian test matrix (default 0).</summary>
    public long Seed { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Rank < 0) p.Add($"SvdQuant rank {Rank} must not be negative.");
        if (Alphas is null || Alphas.Count == 0) p.Add("SvdQuant α grid is empty: give at least one migration strength in [0, 1].");
        else p.AddRange(Alphas.Where(a => !(a >= 0 && a <= 1)).Select(a => $"SvdQuant α {a} must be in [0, 1]."));
        if (Oversampling < 0) p.Add($"SvdQuant oversampling {Oversampling} must not be negative.");
        if (PowerIterations < 0) p.Add($"SvdQuant power iterations {PowerIterations} must not be negative.");
        return p;
    }
}
