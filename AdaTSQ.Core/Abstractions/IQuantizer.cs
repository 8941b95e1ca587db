using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// Turns a layer's float weight (and, for data-aware methods, its calibration statistics) into a
/// quantized weight for one <see cref="QuantSpec"/>. Round-to-nearest needs no data; GPTQ-style
/// methods use the input second moment in <see cref="LayerStatistics"/>.
/// </summary>
public interface IQuantizer
{
    /// <summary>A short name for logs and reports, e.g. "RTN", "GPTQ".</summary>
    string Name { get; }

    /// <summary>What the quantizer needs from calibration (nothing for RTN).</summary>
    CalibrationRequirements Requirements { get; }

    /// <summary>
    /// Quantizes <paramref name="weight"/> (<c>[out, in]</c>, float, finite) of the layer
    /// <paramref name="layerName"/> under <paramref name="spec"/>. Must not modify <paramref name="weight"/>.
    /// </summary>
    /// <param name="layerName">For messages.</param>
    /// <param name="weight">The float weight.</param>
    /// <param name="spec">A valid, enabled weight spec.</param>
    /// <param name="statistics">The layer's calibration statistics; null when none were collected.</param>
    /// <param name="cancellationToken">Checked between units of work.</param>
    QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default);
}
