// QuantLinear (partial): smoothing factors per group of sampling steps (ViDiT-Q's timestep-aware channel
// balancing). A step group has its own factors s_g and its own weight versions, quantized from W·diag(s_g)·Rᵀ;
// a call inside the group's steps takes (x / s_g)·Rᵀ and the group's version, a call at any other step (or
// outside any step) the layer's own smoothing (QuantLinear.Smoothing.cs) and versions (QuantLinear.WeightVersions.cs).
using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private readonly List<StepSmoothing> _stepSmoothing = [];

    /// <summary>The step groups <c>(first, last)</c> with their own smoothing factors, ordered by first step.</summary>
    public IReadOnlyList<(int FirstStep, int LastStep)> InputSmoothingGroups =>
        _stepSmoothing.OrderBy(g => g.First).Select(g => (g.First, g.Last)).ToList();

    /// <summary>
    /// The smoothing factors a quantized call at step <paramref name="stepIndex"/> divides its input by: the factors of
    /// the step group that holds the step, else <see cref="InputSmoothing"/> (null when neither is set).
    /// </summary>
    public Tensor? InputSmoothingAt(int stepIndex) => GroupAt(stepIndex)?.Factors ?? _smoothing;

    /// <summary>
    /// Sets the smoothing factors <paramref name="factors"/> <c>[in]</c> (finite, positive) of the sampling steps
    /// <paramref name="firstStep"/>…<paramref name="lastStep"/> (ViDiT-Q's timestep-aware channel balancing): a quantized
    /// call at one of these steps computes <c>Q((x / s_g)·Rᵀ) · Q(W·diag(s_g)·Rᵀ)ᵀ</c> with the group's own weight versions
    /// (<see cref="SetStepWeightVersion"/>), which equals <c>x·Wᵀ</c> in exact arithmetic. A group
    /// with exactly these steps is replaced; one that overlaps them otherwise is refused. Like
    /// <see cref="SetInputSmoothing"/>: only while no weight version is held, before any rotation, without a
    /// low-rank branch.
    /// </summary>
    /// <exception cref="LayerQuantizationException">A version, rotation or low-rank branch exists; the shape, values or steps are invalid.</exception>
    public void SetStepInputSmoothing(Tensor factors, int firstStep, int lastStep)
    {
        ArgumentNullException.ThrowIfNull(factors);
        if (firstStep < 0 || lastStep < firstStep)
            throw new LayerQuantizationException(LayerName, $"step group {firstStep}…{lastStep} is not a valid range of step indices.");
        CheckSmoothingCanChange();
        CheckSmoothingFactors(factors);
        var overlapping = _stepSmoothing.Where(g => g.First <= lastStep && firstStep <= g.Last).ToList();
        if (overlapping.Any(g => g.First != firstStep || g.Last != lastStep))
            throw new LayerQuantizationException(LayerName, $"smoothing step group {firstStep}…{lastStep} overlaps group(s) {string.Join(", ", overlapping.Select(g => $"{g.First}…{g.Last}"))}.");
        foreach (var g in overlapping)
        {
            g.Dispose();
            _stepSmoothing.Remove(g);
        }
        using var noGrad = torch.no_grad();
        var s = factors.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
        _stepSmoothing.Add(new StepSmoothing(firstStep, lastStep, s, s.reciprocal().DetachFromDisposeScope()));
    }

    /// <summary>
    /// The weight the versions of step group <paramref name="firstStep"/>…<paramref name="lastStep"/> stand for: <c>W·diag(s_g)·Rᵀ</c>
    /// (a new tensor, detached; see <see cref="SmoothedWeight"/> for the layer's own).
    /// </summary>
    /// <exception cref="LayerQuantizationException">No smoothing group has exactly these steps.</exception>
    public Tensor StepSmoothedWeight(int firstStep, int lastStep)
    {
        var g = Group(firstStep, lastStep);
        using var noGrad = torch.no_grad();
        return RotateWeight(weight.detach() * g.Factors.unsqueeze(0));
    }

    /// <summary>
    /// Adds (or replaces) step group <paramref name="firstStep"/>…<paramref name="lastStep"/>'s weight version of
    /// <paramref name="quantized"/>'s spec, quantized from <see cref="StepSmoothedWeight"/>. Takes ownership.
    /// </summary>
    /// <exception cref="LayerQuantizationException">No smoothing group has these steps, or the shape does not match the weight.</exception>
    public void SetStepWeightVersion(QuantizedTensor quantized, int firstStep, int lastStep)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        var g = Group(firstStep, lastStep);
        if (!quantized.Shape.SequenceEqual(weight.shape))
            throw new LayerQuantizationException(LayerName, $"quantized weight of step group {firstStep}…{lastStep} has shape [{string.Join(", ", quantized.Shape)}], expected [{string.Join(", ", weight.shape)}].");
        if (g.Versions.Remove(quantized.Spec, out var old)) old.Dispose();
        g.Versions[quantized.Spec] = new WeightVersion(quantized, weight.dtype, weight.device);
    }

    /// <summary>True when step group <paramref name="firstStep"/>…<paramref name="lastStep"/> holds a version for <paramref name="spec"/>.</summary>
    public bool HasStepWeightVersion(QuantSpec spec, int firstStep, int lastStep) => Group(firstStep, lastStep).Versions.ContainsKey(spec);

    /// <summary>The integer form of step group <paramref name="firstStep"/>…<paramref name="lastStep"/>'s version for <paramref name="spec"/> (owned by the layer).</summary>
    public QuantizedTensor GetStepWeightVersion(QuantSpec spec, int firstStep, int lastStep) =>
        Group(firstStep, lastStep).Versions.TryGetValue(spec, out var v) ? v.Integer
            : throw new LayerQuantizationException(LayerName, $"step group {firstStep}…{lastStep} has no quantized weight version for {spec}.");

    // The step group of the current TimestepContext step, or null (no step, or a step outside every group).
    private StepSmoothing? ActiveStepGroup => _stepSmoothing.Count == 0 || TimestepContext.Current is not { } step ? null : GroupAt(step.StepIndex);

    // 1 / s of the call at the current step: the step group's, else the layer's own.
    private Tensor? ActiveInverseSmoothing => ActiveStepGroup?.Inverse ?? _inverseSmoothing;

    // The weight version a call at the current step uses.
    private WeightVersion ActiveVersion(QuantSpec spec)
    {
        if (ActiveStepGroup is not { } g) return Version(spec);
        if (g.Versions.TryGetValue(spec, out var v)) return v;
        throw new LayerQuantizationException(LayerName, $"step group {g.First}…{g.Last} has no quantized weight version for {spec} (held: {(g.Versions.Count == 0 ? "none" : string.Join("; ", g.Versions.Keys))}).");
    }

    // The integer form of the version the current step's call uses (the integer kernels pack it).
    internal QuantizedTensor ActiveWeightVersion(QuantSpec spec) => ActiveVersion(spec).Integer;

    // True when the current step's version is stored nested in a wider one (the integer kernels then pack it per call).
    internal bool ActiveWeightVersionIsNested(QuantSpec spec) => ActiveVersion(spec).IsNested;

    // A fresh integer form of the current step's version that the caller owns (nested codes rebuilt from the parent).
    internal QuantizedTensor MaterializeActiveWeightVersion(QuantSpec spec) => ActiveVersion(spec).MaterializeOwned();

    // The float weight of a call with quantized activations and full-precision weights at the current step.
    private Tensor ActiveFloatWeightForQuantizedInput()
    {
        if (ActiveStepGroup is not { } g) return FloatWeightForQuantizedInput();
        return g.FloatWeight ??= StepSmoothedWeight(g.First, g.Last).DetachFromDisposeScope();
    }

    private StepSmoothing? GroupAt(int stepIndex) => _stepSmoothing.FirstOrDefault(g => g.First <= stepIndex && stepIndex <= g.Last);

    private StepSmoothing Group(int firstStep, int lastStep) =>
        _stepSmoothing.FirstOrDefault(g => g.First == firstStep && g.Last == lastStep)
        ?? throw new LayerQuantizationException(LayerName, $"no smoothing step group {firstStep}…{lastStep} (groups: {(_stepSmoothing.Count == 0 ? "none" : string.Join(", ", InputSmoothingGroups.Select(r => $"{r.FirstStep}…{r.LastStep}")))}).");

    private bool HasStepVersions => _stepSmoothing.Any(g => g.Versions.Count > 0);

    private IEnumerable<WeightVersion> StepVersions => _stepSmoothing.SelectMany(g => g.Versions.Values);

    private void RemoveStepVersions(QuantSpec spec)
    {
        foreach (var g in _stepSmoothing)
            if (g.Versions.Remove(spec, out var old)) old.Dispose();
    }

    private void ClearStepVersions()
    {
        foreach (var g in _stepSmoothing)
        {
            foreach (var v in g.Versions.Values) v.Dispose();
            g.Versions.Clear();
        }
    }

    private void InvalidateStepSmoothedWeights()
    {
        foreach (var g in _stepSmoothing)
        {
            g.FloatWeight?.Dispose();
            g.FloatWeight = null;
        }
    }

    private void MoveStepSmoothing()
    {
        for (int i = 0; i < _stepSmoothing.Count; i++)
        {
            var g = _stepSmoothing[i];
            var s = g.Factors.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
            var moved = new StepSmoothing(g.First, g.Last, s, s.reciprocal().DetachFromDisposeScope());
            foreach (var (spec, v) in g.Versions) moved.Versions[spec] = v.To(weight.dtype, weight.device);
            g.Versions.Clear();
            g.Dispose();
            _stepSmoothing[i] = moved;
        }
    }

    private void DisposeStepSmoothing()
    {
        foreach (var g in _stepSmoothing) g.Dispose();
        _stepSmoothing.Clear();
    }

    // One step group: its steps, factors s_g and 1 / s_g, its weight versions and the float W·diag(s_g)·Rᵀ (made on first use).
    private sealed class StepSmoothing(int first, int last, Tensor factors, Tensor inverse) : IDisposable
    {
        public int First { get; } = first;
        public int Last { get; } = last;
        public Tensor Factors { get; } = factors;
        public Tensor Inverse { get; } = inverse;
        public Dictionary<QuantSpec, WeightVersion> Versions { get; } = new();
        public Tensor? FloatWeight { get; set; }

        public void Dispose()
        {
            foreach (var v in Versions.Values) v.Dispose();
            Versions.Clear();
            FloatWeight?.Dispose();
            Factors.Dispose();
            Inverse.Dispose();
        }
    }
}
