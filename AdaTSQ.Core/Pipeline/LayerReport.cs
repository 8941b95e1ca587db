using AdaTSQ.Quantization;
namespace AdaTSQ.Pipeline;

/// <summary>What quantizing one layer with one weight spec cost.</summary>
/// <param name="Name">Dotted layer name.</param>
/// <param name="InFeatures">Input features.</param>
/// <param name="OutFeatures">Output features.</param>
/// <param name="Config">The layer config this version serves (e.g. W4A8).</param>
/// <param name="WeightRelativeError">‖W − Q‖_F / ‖W‖_F.</param>
/// <param name="OutputRelativeError">
/// ‖(W − Q)X‖_F / ‖WX‖_F on the calibration inputs X (from their second moment), weight quantization
/// only; null when no second moments were collected.
/// </param>
/// <param name="QuantizedBytes">Bytes of the integer weight (codes, scales, zero points).</param>
public sealed record LayerReport(string Name, long InFeatures, long OutFeatures, LayerQuantConfig Config,
    double WeightRelativeError, double? OutputRelativeError, long QuantizedBytes)
{
    /// <summary>
    /// ‖(W − Q)X‖² per calibration input row, <c>tr(ΔW H ΔWᵀ)</c> with the calibration second moment H
    /// (Fisher-weighted when the calibration was); null without second moments. The bit-width search
    /// ranks layers by it (<c>LayerSensitivity</c> in <c>Methods/AdaTSQ/Search</c>).
    /// </summary>
    public double? OutputSquaredError { get; init; }

    /// <summary>
    /// <c>tr(H)</c> of the same calibration second moment as <see cref="OutputSquaredError"/> (per input row, so the
    /// mean squared input norm, Fisher-weighted when the calibration was); null without second moments. The ratio
    /// <c>OutputSquaredError / InputSecondMomentTrace</c> does not depend on the scale of the calibration's weighting
    /// (<c>SensitivityMode.CrossLayerFisher</c> in <c>Methods/AdaTSQ/Search</c> uses it).
    /// </summary>
    public double? InputSecondMomentTrace { get; init; }
}
