namespace AdaTSQ.Abstractions;

/// <summary>Progress of a long quantization stage, reported through <see cref="IProgress{T}"/>.</summary>
/// <param name="Stage">The stage, e.g. "calibrate" or "quantize".</param>
/// <param name="Completed">Units done so far in this stage.</param>
/// <param name="Total">Units in this stage.</param>
/// <param name="Item">What was just finished (a layer name, a calibration item), if anything.</param>
public readonly record struct QuantizationProgress(string Stage, int Completed, int Total, string? Item = null)
{
    /// <summary>Fraction done in [0, 1].</summary>
    public double Fraction => Total <= 0 ? 1.0 : Math.Clamp((double)Completed / Total, 0.0, 1.0);
}
