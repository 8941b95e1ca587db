namespace AdaTSQ.Evaluation.Comparison;

/// <summary>How a <see cref="ModelComparison"/> evaluates its cells and where it caches them.</summary>
public sealed record ComparisonOptions
{
    /// <summary>Samples, chunks, seed and noise of every cell (the same for all cells, so they are paired).</summary>
    public required ChunkedEvaluationOptions Evaluation { get; init; }

    /// <summary>Directory of the cell files and of the reference images (created if missing). Required.</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>
    /// What identifies the model's weights, e.g. <see cref="CellFingerprint.OfFile"/> of its checkpoint. Goes into
    /// every fingerprint. Required.
    /// </summary>
    public required string ModelIdentity { get; init; }

    /// <summary>
    /// Everything else the caller's sampler and scorers depend on, as key/value text (sampler, steps, CFG, classifier
    /// and FID reference identities …). Goes into every fingerprint. Default empty.
    /// </summary>
    public IReadOnlyDictionary<string, string> Context { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Sample a cell on the integer kernels when every quantized layer's config runs there
    /// (<see cref="Quantization.IntegerLinearKernel.WhyNotSupported(Quantization.LayerQuantConfig, long?)"/>) and the device is
    /// the CPU; they equal fake quantization up to float rounding and are several times faster. Default true.
    /// </summary>
    public bool UseIntegerKernels { get; init; } = true;

    /// <summary>Bootstrap resamples of the FID and accuracy intervals. Default 1000.</summary>
    public int BootstrapResamples { get; init; } = Bootstrap.DefaultResamples;

    /// <summary>Coverage of every interval. Default 0.95.</summary>
    public double Level { get; init; } = 0.95;

    /// <summary>Recompute cached cells that failed (default false: a failure is cached like a result).</summary>
    public bool RetryFailed { get; init; }

    /// <summary>Every problem with these options, empty when they are valid.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (Evaluation is null) problems.Add("Evaluation options are required.");
        else problems.AddRange(Evaluation.Problems());
        if (string.IsNullOrWhiteSpace(CacheDirectory)) problems.Add("CacheDirectory is required.");
        if (string.IsNullOrWhiteSpace(ModelIdentity)) problems.Add("ModelIdentity is required (e.g. CellFingerprint.OfFile(checkpoint)).");
        if (Context is null) problems.Add("Context must not be null (use an empty dictionary).");
        if (BootstrapResamples < 2) problems.Add($"BootstrapResamples must be at least 2, got {BootstrapResamples}.");
        if (!(Level > 0 && Level < 1)) problems.Add($"Level must be in (0, 1), got {Level}.");
        return problems;
    }
}
