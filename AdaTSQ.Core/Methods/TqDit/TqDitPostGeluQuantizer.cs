using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>
/// TQ-DiT's multi-region quantizer (MRQ) after GELU as a layer's input quantizer (<see cref="QuantLinear.SetInputQuantizer"/>),
/// set by <see cref="TqDitSearch"/> on <c>mlp.fc2</c> when <see cref="TqDitOptions.PostGeluMultiRegion"/> is on: negative inputs
/// on the fixed step <c>0.16997/2^(k−1)</c>, non-negative inputs on a searched positive step (<see cref="TqDitGrid.PostGelu"/>),
/// one positive step per TGQ group of sampling steps and one for calls outside them. Holds no tensors.
/// </summary>
public sealed class TqDitPostGeluQuantizer : IActivationQuantizer
{
    private readonly (int FirstStep, int LastStep, double Step)[] _groups;

    /// <summary>Creates the quantizer of layer <paramref name="layer"/> for <paramref name="bits"/>-bit inputs.</summary>
    /// <param name="layer">The layer's name (for errors).</param>
    /// <param name="bits">Activation bits (2–8); calls with an activation spec of other bits are refused.</param>
    /// <param name="overallStep">The positive step of calls outside every group (and outside any sampling step).</param>
    /// <param name="groupSteps">The positive step of each group of sampling steps <c>First…Last</c> (inclusive, not overlapping).</param>
    public TqDitPostGeluQuantizer(string layer, int bits, double overallStep, IEnumerable<(int FirstStep, int LastStep, double Step)> groupSteps)
    {
        ArgumentException.ThrowIfNullOrEmpty(layer);
        ArgumentNullException.ThrowIfNull(groupSteps);
        if (bits < 2 || bits > 8) throw new ArgumentOutOfRangeException(nameof(bits), $"TQ-DiT quantizes to 2–8 bits, got {bits}.");
        if (!(overallStep > 0) || double.IsInfinity(overallStep)) throw new ArgumentOutOfRangeException(nameof(overallStep), $"step {overallStep} must be finite and positive.");
        _groups = groupSteps.OrderBy(g => g.FirstStep).ToArray();
        for (int i = 0; i < _groups.Length; i++)
        {
            var (first, last, step) = _groups[i];
            if (first < 0 || last < first) throw new ArgumentException($"{layer}: step group {first}…{last} is not a valid range of step indices.", nameof(groupSteps));
            if (!(step > 0) || double.IsInfinity(step)) throw new ArgumentException($"{layer}: step {step} of group {first}…{last} must be finite and positive.", nameof(groupSteps));
            if (i > 0 && first <= _groups[i - 1].LastStep) throw new ArgumentException($"{layer}: step group {first}…{last} overlaps {_groups[i - 1].FirstStep}…{_groups[i - 1].LastStep}.", nameof(groupSteps));
        }
        Layer = layer;
        Bits = bits;
        OverallStep = overallStep;
    }

    /// <summary>
    /// True for the layers whose input is a GELU output in a DiT block: <c>mlp.fc2</c> (named so, or ending in <c>.mlp.fc2</c>),
    /// fed by fc1's tanh GELU.
    /// </summary>
    public static bool AppliesTo(string layerName)
    {
        ArgumentNullException.ThrowIfNull(layerName);
        return layerName == "mlp.fc2" || layerName.EndsWith(".mlp.fc2", StringComparison.Ordinal);
    }

    /// <summary>The layer's name.</summary>
    public string Layer { get; }

    /// <summary>Activation bits k.</summary>
    public int Bits { get; }

    /// <summary>The fixed step of negative inputs, <c>0.16997/2^(k−1)</c>.</summary>
    public double NegativeStep => TqDitGrid.GeluNegativeRange / (1 << (Bits - 1));

    /// <summary>The positive step of calls outside every group.</summary>
    public double OverallStep { get; }

    /// <summary>The positive step of each group of sampling steps, ordered by first step.</summary>
    public IReadOnlyList<(int FirstStep, int LastStep, double Step)> GroupSteps => _groups;

    /// <inheritdoc />
    public string Description => $"TQ-DiT MRQ post-GELU, {Bits} bits (negative step {NegativeStep:G4}; positive step {OverallStep:G4} overall, its own in each of {_groups.Length} step groups)";

    /// <summary>The positive step of a call at <paramref name="step"/>: its group's, else <see cref="OverallStep"/>.</summary>
    public double PositiveStepAt(TimestepInfo? step)
    {
        if (step is { } s)
            foreach (var (first, last, d) in _groups)
                if (first <= s.StepIndex && s.StepIndex <= last) return d;
        return OverallStep;
    }

    /// <inheritdoc />
    public Tensor QuantizeDequantize(Tensor input, QuantSpec spec, TimestepInfo? step)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Bits != Bits)
            throw new LayerQuantizationException(Layer, $"TQ-DiT's post-GELU quantizer was searched for {Bits}-bit inputs; the call's activation spec is {spec}.");
        return TqDitGrid.PostGelu(input, Bits, PositiveStepAt(step));
    }
}
