namespace AdaTSQ.Evaluation;

/// <summary>How a <see cref="ChunkedEvaluator"/> splits and seeds an evaluation.</summary>
public sealed record ChunkedEvaluationOptions
{
    /// <summary>Samples per setting. Default 1000.</summary>
    public int Samples { get; init; } = 1000;

    /// <summary>Samples per chunk (the sampling batch; at most one chunk of images is alive at a time). Default 100.</summary>
    public int ChunkSize { get; init; } = 100;

    /// <summary>Seed of the initial noise x_T. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Sample shape [C, H, W] of one x_T (e.g. [1, 28, 28]).</summary>
    public required long[] SampleShape { get; init; }

    /// <summary>Number of classes; sample i requests class i mod <see cref="Classes"/>. Default 10.</summary>
    public int Classes { get; init; } = 10;

    /// <summary>How x_T is drawn. Default <see cref="NoiseScheme.PerSample"/>.</summary>
    public NoiseScheme Noise { get; init; } = NoiseScheme.PerSample;

    /// <summary>Every problem with these options, empty when they are valid.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (Samples < 1) problems.Add($"Samples must be at least 1, got {Samples}.");
        if (ChunkSize < 1) problems.Add($"ChunkSize must be at least 1, got {ChunkSize}.");
        if (SampleShape is null || SampleShape.Length == 0 || SampleShape.Any(d => d < 1))
            problems.Add($"SampleShape must be a non-empty shape of positive sizes, got [{string.Join(", ", SampleShape ?? [])}].");
        if (Classes < 1) problems.Add($"Classes must be at least 1, got {Classes}.");
        return problems;
    }
}

/// <summary>How the initial noise of an evaluation is drawn.</summary>
public enum NoiseScheme
{
    /// <summary>
    /// Sample i's x_T comes from its own generator, seeded by a hash of (seed, i): the noise of a sample does
    /// not depend on the chunk size or on how many samples are evaluated, and costs nothing to regenerate.
    /// </summary>
    PerSample,

    /// <summary>
    /// All x_T come from one generator seeded with the seed, drawn as one <c>[Samples, C, H, W]</c> tensor and
    /// sliced per chunk: the noise of evaluate before the chunked evaluator (issue 14), for reproducing old
    /// numbers. Each chunk redraws the whole tensor (O(Samples) transient memory: 3 KB per 28×28 sample).
    /// </summary>
    SharedStream,
}
