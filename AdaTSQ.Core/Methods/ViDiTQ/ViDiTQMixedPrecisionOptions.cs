namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// Options of ViDiT-Q's metric-decoupled mixed precision (<see cref="MetricDecoupledMixedPrecision"/>). Every quantized
/// layer gets one of two configs: the builder's Weights(...)/Activations(...) (the low one) or the same specs at
/// <see cref="HighWeightBits"/>/<see cref="HighActivationBits"/>. Defaults: W8A8 for the layers each metric finds most
/// sensitive, under at most 5 weight bits on average.
/// </summary>
public sealed record ViDiTQMixedPrecisionOptions
{
    /// <summary>Weight bits of the high config (default 8; more than the builder's weight bits).</summary>
    public int HighWeightBits { get; init; } = 8;

    /// <summary>Activation bits of the high config (default 8; at least the builder's activation bits).</summary>
    public int HighActivationBits { get; init; } = 8;

    /// <summary>
    /// The budget: average weight bits per parameter over the quantized layers (default 5.0, e.g. W4 with a quarter of the
    /// parameters at W8). Must be at least the builder's weight bits (every layer at the low config).
    /// </summary>
    public double AverageWeightBits { get; init; } = 5.0;

    /// <summary>
    /// The quality aspects measured separately (default: <see cref="FrequencyBandMseMetric.Structure"/> and
    /// <see cref="FrequencyBandMseMetric.Detail"/>; add a <see cref="ClassProbabilityMetric"/> when a classifier is at hand).
    /// Names must be unique.
    /// </summary>
    public IReadOnlyList<ISensitivityMetric> Metrics { get; init; } = [FrequencyBandMseMetric.Structure, FrequencyBandMseMetric.Detail];

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (HighWeightBits is < 2 or > 8) p.Add($"HighWeightBits {HighWeightBits} must be in 2…8.");
        if (HighActivationBits is < 2 or > 16) p.Add($"HighActivationBits {HighActivationBits} must be in 2…16.");
        if (!(double.IsFinite(AverageWeightBits) && AverageWeightBits > 0)) p.Add($"AverageWeightBits {AverageWeightBits} must be finite and positive.");
        if (Metrics is null || Metrics.Count == 0 || Metrics.Any(m => m is null)) p.Add("Metrics must hold at least one metric and no null.");
        else if (Metrics.Select(m => m.Name).Distinct().Count() != Metrics.Count)
            p.Add($"metric names must be unique: {string.Join(", ", Metrics.Select(m => m.Name))}.");
        return p;
    }
}
