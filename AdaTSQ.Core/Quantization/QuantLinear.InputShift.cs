// QuantLinear (partial): a per-channel input shift z per group of sampling steps (HTG's timestep-grouped shift,
// arXiv 2503.06930). A quantized call at a step of group g works on x − z_g (then the smoothing, rotation and
// quantization of the other partial files) and adds W·z_g, with the float W, to the bias: b_g = b + W·z_g, so that
// the call equals x·Wᵀ + b in exact arithmetic. Full-precision calls ignore the shift.
using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private readonly List<ShiftGroup> _shiftGroups = [];
    private ShiftGroup? _defaultShift;

    /// <summary>True when a quantized call may shift its input (<see cref="SetInputShift"/> or <see cref="SetStepInputShift"/> was called).</summary>
    public bool HasInputShift => _defaultShift is not null || _shiftGroups.Count > 0;

    /// <summary>The step groups <c>(first, last)</c> with their own input shift, ordered by first step.</summary>
    public IReadOnlyList<(int FirstStep, int LastStep)> InputShiftGroups =>
        _shiftGroups.OrderBy(g => g.First).Select(g => (g.First, g.Last)).ToList();

    /// <summary>
    /// The shift <c>z</c> <c>[in]</c> a quantized call at step <paramref name="stepIndex"/> (null: outside any step) subtracts
    /// from its input: the shift of the step group that holds the step, else the default one (<see cref="SetInputShift"/>);
    /// null when neither is set. Owned by the layer.
    /// </summary>
    public Tensor? InputShiftAt(int? stepIndex) => ShiftGroupAt(stepIndex)?.Shift;

    /// <summary>
    /// The bias <c>b + W·z</c> <c>[out]</c> (float W) of a quantized call at step <paramref name="stepIndex"/> that shifts its
    /// input by <c>z</c>; null when the call does not shift. Owned by the layer.
    /// </summary>
    public Tensor? ShiftedBiasAt(int? stepIndex) => ShiftGroupAt(stepIndex)?.Bias;

    /// <summary>
    /// Sets (or with null removes) the default input shift <paramref name="shift"/> <c>[in]</c> (finite): the one of
    /// quantized calls outside every step group of <see cref="SetStepInputShift"/> (and outside any sampling step). A quantized
    /// call then computes <c>Q((x − z)/s) · Q(W·diag(s))ᵀ + (b + W·z)</c> (smoothing s, rotation and low-rank branch as
    /// without the shift), equal to <c>x·Wᵀ + b</c> in exact arithmetic. The bias <c>b + W·z</c> is computed now from the
    /// float weight: change the weight afterwards and the shift must be set again.
    /// </summary>
    /// <exception cref="LayerQuantizationException">The shape or values are invalid.</exception>
    public void SetInputShift(Tensor? shift)
    {
        _defaultShift?.Dispose();
        _defaultShift = shift is null ? null : MakeShiftGroup(shift, -1, -1);
    }

    /// <summary>
    /// Sets the input shift <paramref name="shift"/> <c>[in]</c> of the sampling steps <paramref name="firstStep"/>…<paramref name="lastStep"/>
    /// (HTG's timestep group; see <see cref="SetInputShift"/> for what a call computes). A group with exactly these steps is
    /// replaced; one that overlaps them otherwise is refused.
    /// </summary>
    /// <exception cref="LayerQuantizationException">The shape, values or steps are invalid, or the steps overlap another group.</exception>
    public void SetStepInputShift(Tensor shift, int firstStep, int lastStep)
    {
        ArgumentNullException.ThrowIfNull(shift);
        if (firstStep < 0 || lastStep < firstStep)
            throw new LayerQuantizationException(LayerName, $"shift step group {firstStep}…{lastStep} is not a valid range of step indices.");
        var overlapping = _shiftGroups.Where(g => g.First <= lastStep && firstStep <= g.Last).ToList();
        if (overlapping.Any(g => g.First != firstStep || g.Last != lastStep))
            throw new LayerQuantizationException(LayerName, $"shift step group {firstStep}…{lastStep} overlaps group(s) {string.Join(", ", overlapping.Select(g => $"{g.First}…{g.Last}"))}.");
        var made = MakeShiftGroup(shift, firstStep, lastStep);
        foreach (var g in overlapping)
        {
            g.Dispose();
            _shiftGroups.Remove(g);
        }
        _shiftGroups.Add(made);
    }

    /// <summary>Removes every input shift (the default one and the step groups').</summary>
    public void ClearInputShift() => DisposeInputShift();

    // The shift group of the current TimestepContext step (its group, else the default), or null.
    private ShiftGroup? ActiveShiftGroup => HasInputShift ? ShiftGroupAt(TimestepContext.Current?.StepIndex) : null;

    // x − z of the current step's shift, or null when the call does not shift.
    internal Tensor? ShiftInput(Tensor input) => ActiveShiftGroup is { } g ? input - g.Shift : null;

    // The shift z and bias b + W·z of the current step's call, or null when it does not shift (the integer kernels use them).
    internal (Tensor Shift, Tensor Bias)? ActiveInputShift => ActiveShiftGroup is { } g ? (g.Shift, g.Bias) : null;

    // The bias of a quantized call at the current step: b + W·z_g when it shifts, else b.
    private Tensor? ActiveQuantizedBias => ActiveShiftGroup?.Bias ?? bias;

    private ShiftGroup? ShiftGroupAt(int? stepIndex)
    {
        if (stepIndex is { } k)
            foreach (var g in _shiftGroups)
                if (g.First <= k && k <= g.Last) return g;
        return _defaultShift;
    }

    private ShiftGroup MakeShiftGroup(Tensor shift, int first, int last)
    {
        if (shift.Dimensions != 1 || shift.shape[0] != InFeatures)
            throw new LayerQuantizationException(LayerName, $"input shift has shape [{string.Join(", ", shift.shape)}], expected [{InFeatures}].");
        using var noGrad = torch.no_grad();
        using (var check = torch.NewDisposeScope())
            if (!shift.isfinite().all().item<bool>())
                throw new LayerQuantizationException(LayerName, "input shift must be finite.");
        var z = shift.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
        Tensor b;
        using (var scope = torch.NewDisposeScope())
        {
            // W·z in float64, so that the shifted call's bias does not add rounding of its own.
            var wz = weight.detach().to(ScalarType.Float64).mv(z.to(ScalarType.Float64));
            if (bias is not null) wz = wz + bias.detach().to(ScalarType.Float64);
            b = wz.to(weight.dtype).MoveToOuterDisposeScope();
        }
        return new ShiftGroup(first, last, z, b.DetachFromDisposeScope());
    }

    private void MoveInputShift()
    {
        for (int i = 0; i < _shiftGroups.Count; i++) _shiftGroups[i] = _shiftGroups[i].To(weight.dtype, weight.device);
        _defaultShift = _defaultShift?.To(weight.dtype, weight.device);
    }

    private void DisposeInputShift()
    {
        foreach (var g in _shiftGroups) g.Dispose();
        _shiftGroups.Clear();
        _defaultShift?.Dispose();
        _defaultShift = null;
    }

    // One shift: its steps (−1…−1 for the default), z [in] and b + W·z [out].
    private sealed class ShiftGroup(int first, int last, Tensor shift, Tensor bias) : IDisposable
    {
        public int First { get; } = first;
        public int Last { get; } = last;
        public Tensor Shift { get; } = shift;
        public Tensor Bias { get; } = bias;

        public ShiftGroup To(ScalarType dtype, Device device)
        {
            var moved = new ShiftGroup(First, Last, Shift.to(dtype, device, copy: true).DetachFromDisposeScope(), Bias.to(dtype, device, copy: true).DetachFromDisposeScope());
            Dispose();
            return moved;
        }

        public void Dispose()
        {
            Shift.Dispose();
            Bias.Dispose();
        }
    }
}
