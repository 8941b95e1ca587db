// QuantLinear (partial): the calibrated input ranges of static activation specs, one per spec and
// optionally one per sampling-step group, and the quantize→dequantize of an input that uses them (or the custom
// input quantizer of QuantLinear.InputQuantizer.cs).
// The module and its forward are in QuantLinear.cs.
using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private readonly Dictionary<QuantSpec, QuantParams> _staticRanges = new();
    private readonly Dictionary<QuantSpec, List<(int First, int Last, QuantParams Range)>> _stepRanges = new();

    /// <summary>
    /// Sets the calibrated input range used by a static (<see cref="QuantSpec.Dynamic"/> = false)
    /// activation spec.
    /// </summary>
    public void SetStaticInputRange(QuantSpec activationSpec, double min, double max)
    {
        CheckStaticRange(activationSpec, min, max);
        var moved = RangeParams(activationSpec, min, max);
        if (_staticRanges.Remove(activationSpec, out var old)) old.Dispose();
        _staticRanges[activationSpec] = moved;
    }

    /// <summary>
    /// Sets the calibrated input range of a static activation spec for the sampling steps
    /// <paramref name="firstStep"/>…<paramref name="lastStep"/> (a timestep group); calls at other steps,
    /// or outside any step, use the range set by <see cref="SetStaticInputRange(QuantSpec, double, double)"/>.
    /// </summary>
    public void SetStaticInputRange(QuantSpec activationSpec, double min, double max, int firstStep, int lastStep)
    {
        if (firstStep < 0 || lastStep < firstStep)
            throw new LayerQuantizationException(LayerName, $"step group {firstStep}…{lastStep} is not a valid range of step indices.");
        CheckStaticRange(activationSpec, min, max);
        if (!_stepRanges.TryGetValue(activationSpec, out var list)) _stepRanges[activationSpec] = list = [];
        var overlapping = list.Where(r => r.First <= lastStep && firstStep <= r.Last).ToList();
        if (overlapping.Any(r => r.First != firstStep || r.Last != lastStep))
            throw new LayerQuantizationException(LayerName, $"step group {firstStep}…{lastStep} overlaps group(s) {string.Join(", ", overlapping.Select(r => $"{r.First}…{r.Last}"))}.");
        foreach (var r in overlapping)
        {
            r.Range.Dispose();
            list.Remove(r);
        }
        list.Add((firstStep, lastStep, RangeParams(activationSpec, min, max)));
    }

    /// <summary>The step groups with their own static range for <paramref name="activationSpec"/>.</summary>
    public IReadOnlyList<(int FirstStep, int LastStep)> StaticRangeGroups(QuantSpec activationSpec) =>
        _stepRanges.TryGetValue(activationSpec, out var list) ? list.Select(r => (r.First, r.Last)).OrderBy(r => r.First).ToList() : [];

    private void CheckStaticRange(QuantSpec activationSpec, double min, double max)
    {
        activationSpec.Validate(QuantTarget.Activation, InFeatures, $"layer '{LayerName}'");
        if (activationSpec.Dynamic)
            throw new LayerQuantizationException(LayerName, $"activation spec {activationSpec} is dynamic: it takes no calibrated range.");
        if (!double.IsFinite(min) || !double.IsFinite(max) || min > max)
            throw new LayerQuantizationException(LayerName, $"static input range [{min}, {max}] is not a finite, ordered range.");
    }

    private QuantParams RangeParams(QuantSpec spec, double min, double max)
    {
        using var lo = torch.tensor((float)min).reshape(1, 1, 1);
        using var hi = torch.tensor((float)max).reshape(1, 1, 1);
        using var p = QuantParams.FromRange(lo, hi, spec);
        return p.To(weight.device);
    }

    /// <summary>
    /// Quantize→dequantize of an input under <paramref name="spec"/> (dynamic, or with the calibrated static range); with a
    /// custom <see cref="InputQuantizer"/>, that quantizer's output for an enabled spec.
    /// </summary>
    public Tensor QuantizeInput(Tensor input, QuantSpec spec)
    {
        if (!spec.IsEnabled) return input.alias();
        if (_inputQuantizer is { } custom) return custom.QuantizeDequantize(input, spec, TimestepContext.Current);
        if (spec.Granularity == QuantGranularity.PerGroup)
        {
            // Per-token × per-group ranges exist only at run time; say which layer a group does not fit.
            if (!spec.Dynamic)
                throw new LayerQuantizationException(LayerName, $"activation spec {spec} is static: calibrated ranges are per tensor; per-group activation scales must be dynamic.");
            spec.Validate(QuantTarget.Activation, InFeatures, $"layer '{LayerName}'");
        }
        if (spec.Dynamic) return FakeQuantizer.QuantizeDequantize(input, spec);
        if (TimestepContext.Current is { } step && _stepRanges.TryGetValue(spec, out var groups))
            foreach (var g in groups)
                if (g.First <= step.StepIndex && step.StepIndex <= g.Last)
                    return FakeQuantizer.QuantizeDequantize(input, spec, g.Range);
        if (!_staticRanges.TryGetValue(spec, out var range))
            throw new LayerQuantizationException(LayerName, $"static activation spec {spec} has no calibrated range: calibrate the model first (a calibrator sets it).");
        return FakeQuantizer.QuantizeDequantize(input, spec, range);
    }

    private void ClearRanges()
    {
        foreach (var r in _staticRanges.Values) r.Dispose();
        _staticRanges.Clear();
        foreach (var r in _stepRanges.Values.SelectMany(l => l)) r.Range.Dispose();
        _stepRanges.Clear();
    }
}
