using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Rtn;

/// <summary>
/// Round-to-nearest: each weight goes to the nearest level of its group's grid, with the group's
/// min/max (times the clip ratio) as range. Needs no calibration data; the baseline of every table.
/// </summary>
public sealed class RtnQuantizer : IQuantizer
{
    /// <inheritdoc />
    public string Name => "RTN";

    /// <inheritdoc />
    public CalibrationRequirements Requirements => CalibrationRequirements.None;

    /// <inheritdoc />
    public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default)
    {
        spec.Validate(QuantTarget.Weight, weight.shape[^1], $"layer '{layerName}'");
        if (!spec.IsEnabled) throw new LayerQuantizationException(layerName, "RTN was asked to quantize with a full-precision spec.");
        cancellationToken.ThrowIfCancellationRequested();
        using var noGrad = torch.no_grad();
        using var w = weight.detach();
        return QuantizedTensor.Quantize(w, spec);
    }
}
