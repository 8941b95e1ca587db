using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Nested;

/// <summary>
/// Quantizes every width narrower than <see cref="ParentBits"/> as a slice of the <see cref="ParentBits"/>-bit version that
/// the inner quantizer (RTN, GPTQ, …) makes (<see cref="NestedCodes.Slice"/>, scales refitted unless
/// <see cref="RefitScales"/> is false); widths at or above <see cref="ParentBits"/> go to the inner quantizer unchanged. So
/// the versions a layer holds for a search space are nested: every narrower version's codes are the rounded top bits of the
/// widest one's. The parent is quantized again for each narrower width (no state is kept between calls), which costs as
/// much as quantizing each width independently.
/// </summary>
public sealed class NestedQuantizer : IQuantizer
{
    private readonly IQuantizer _inner;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">Makes the parent version.</param>
    /// <param name="parentBits">The width the others are sliced from (default 8), in [3, 8].</param>
    /// <param name="refitScales">Refit each narrower version's scales to the float weight (default true).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="parentBits"/> is outside [3, 8].</exception>
    public NestedQuantizer(IQuantizer inner, int parentBits = 8, bool refitScales = true)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        if (parentBits < QuantSpec.MinBits + 1 || parentBits > QuantSpec.MaxBits)
            throw new ArgumentOutOfRangeException(nameof(parentBits), parentBits, $"the parent width must be in [{QuantSpec.MinBits + 1}, {QuantSpec.MaxBits}].");
        ParentBits = parentBits;
        RefitScales = refitScales;
    }

    /// <summary>The width every narrower version is sliced from.</summary>
    public int ParentBits { get; }

    /// <summary>Whether narrower versions get least-squares scales (else the parent's scales × 2^(w−b)).</summary>
    public bool RefitScales { get; }

    /// <inheritdoc />
    public string Name => $"{_inner.Name}, nested in W{ParentBits}";

    /// <inheritdoc />
    public CalibrationRequirements Requirements => _inner.Requirements;

    /// <inheritdoc />
    /// <exception cref="LayerQuantizationException">The spec is asymmetric and narrower than the parent (nested codes are symmetric).</exception>
    public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Bits >= ParentBits || !spec.IsEnabled) return _inner.Quantize(layerName, weight, spec, statistics, cancellationToken);
        if (!spec.Symmetric)
            throw new LayerQuantizationException(layerName, $"nested weights need a symmetric spec; got {spec}.");
        using var parent = _inner.Quantize(layerName, weight, spec with { Bits = ParentBits }, statistics, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        return NestedCodes.Slice(parent, spec.Bits, RefitScales ? weight : null);
    }
}
