namespace AdaTSQ.Calibration;

/// <summary>
/// What a quantizer or pipeline needs a calibrator to collect besides the always-collected input
/// ranges and per-channel maxima.
/// </summary>
public sealed record CalibrationRequirements
{
    /// <summary>Nothing beyond ranges.</summary>
    public static CalibrationRequirements None { get; } = new();

    /// <summary>Input second moments (the Hessian proxy of GPTQ-style methods) as well.</summary>
    public static CalibrationRequirements SecondMoments { get; } = new() { InputSecondMoments = true };

    /// <summary>Collect Σ α·x·xᵀ per layer (<c>[in, in]</c>, float64: memory grows with in²).</summary>
    public bool InputSecondMoments { get; init; }

    /// <summary>
    /// Keep per-channel input extremes per sampling step as well (2 × in floats per step and layer),
    /// so that per-step ranges stay exact after SmoothQuant rescaling.
    /// </summary>
    public bool PerStepChannelExtremes { get; init; }

    /// <summary>What both need.</summary>
    public CalibrationRequirements Union(CalibrationRequirements other) =>
        new()
        {
            InputSecondMoments = InputSecondMoments || other.InputSecondMoments,
            PerStepChannelExtremes = PerStepChannelExtremes || other.PerStepChannelExtremes,
        };
}
