using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using Microsoft.Extensions.Logging;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// The calibrator <c>UsePtq4Dit</c> plugs in: before the first capture of a run, while every layer is still in full
/// precision, it runs the calibration data once over the layers <see cref="Ptq4DitBalancing"/> balances (collecting their
/// per-step channel extremes only), folds the balancing into the model (<see cref="Ptq4DitBalancing.Apply"/>), and then
/// captures with <paramref name="inner"/> on the re-parameterized model — so the quantizer's Hessians and the static
/// ranges are those of the balanced inputs, and nothing of PTQ4DiT is left to do at inference.
/// </summary>
/// <param name="inner">The calibrator that captures (and weights) the statistics the quantizer uses.</param>
/// <param name="balancing">The balancing to apply.</param>
/// <param name="logger">Where the fold is logged.</param>
public sealed class Ptq4DitCalibrator(ICalibrator inner, Ptq4DitBalancing balancing, ILogger? logger = null) : ICalibrator, IPreparingCalibrator
{
    private readonly ICalibrator _inner = inner ?? throw new ArgumentNullException(nameof(inner));
    private readonly Ptq4DitBalancing _balancing = balancing ?? throw new ArgumentNullException(nameof(balancing));
    private IReadOnlyList<IQuantizableLayer>? _all;

    /// <inheritdoc />
    public string Name => $"ptq4dit({_balancing.Options.Layers}{(_balancing.Options.SalienceCalibration ? ", ssc" : "")})+{_inner.Name}";

    /// <summary>Remembers every layer of the run (a block-by-block run calibrates subsets) and prepares the inner calibrator.</summary>
    public void Prepare(IReadOnlyList<IQuantizableLayer> layers, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        _all = layers ?? throw new ArgumentNullException(nameof(layers));
        if (_inner is IPreparingCalibrator preparing) preparing.Prepare(layers, progress, cancellationToken);
    }

    /// <inheritdoc />
    public CalibrationResult Calibrate(IReadOnlyList<IQuantizableLayer> layers, ICalibrationSource source, CalibrationRequirements requirements,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (!_balancing.IsApplied)
        {
            var all = _all ?? layers;
            var targets = all.Where(l => _balancing.Balances(l.LayerName)).ToList();
            if (targets.Count == 0)
                throw new CalibrationException($"PTQ4DiT balances {_balancing.Options.Layers}, but none of the {all.Count} quantized layers is one of them (names ending in .attn.qkv, .attn.proj, .mlp.fc1 or final_layer.linear): {string.Join(", ", all.Take(12).Select(l => l.LayerName))}.");
            var salience = new CalibrationRequirements { PerStepChannelExtremes = _balancing.Options.SalienceCalibration };
            using var fullPrecision = _inner.Calibrate(targets, source, salience, progress, cancellationToken);
            _balancing.Apply(fullPrecision, logger, cancellationToken);
        }
        return _inner.Calibrate(layers, source, requirements, progress, cancellationToken);
    }
}
