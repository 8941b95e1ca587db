using AdaTSQ.Kernels;
using AdaTSQ.Abstractions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// A linear layer with quantized weights and activations, put in place of a
/// <see cref="TorchSharp.Modules.Linear"/> by <see cref="ModelSurgery"/>.
/// </summary>
/// <remarks>
/// <para>It keeps the float <c>weight</c>/<c>bias</c> parameters under their original names (so the
/// model's state dict is unchanged) and any number of quantized weight versions, one per
/// <see cref="QuantSpec"/> (e.g. W4 and W8 at once, for timestep-dependent policies). Which version
/// and which activation quantization a call uses is decided per call: by <see cref="Policy"/> for the
/// current <see cref="TimestepContext"/> step when a policy is set, else by <see cref="DefaultConfig"/>.</para>
/// <para>Weights are computed with in dequantized (fake-quantized) form; the integer form of each
/// version is kept for export and integer kernels. <c>module.to(device)</c> moves every version.</para>
/// </remarks>
public sealed class QuantLinear : nn.Module<Tensor, Tensor>, IQuantizableLayer
{
    private readonly Dictionary<QuantSpec, WeightVersion> _versions = new();
    private readonly Dictionary<QuantSpec, QuantParams> _staticRanges = new();
    private readonly Dictionary<QuantSpec, List<(int First, int Last, QuantParams Range)>> _stepRanges = new();
    private Linear? _original;
    private Tensor? _smoothing;
    private Tensor? _inverseSmoothing;
    private Tensor? _smoothedWeight;
#pragma warning disable IDE1006 // TorchSharp registers parameters under the field names: keep the state-dict names.
    private Parameter weight;
    private Parameter? bias;
#pragma warning restore IDE1006

    /// <summary>Wraps <paramref name="linear"/>, sharing its parameters; starts in full precision.</summary>
    /// <param name="layerName">The dotted name of the layer in its model (used in policies, reports, errors).</param>
    /// <param name="linear">The layer to wrap; <see cref="ModelSurgery.Restore"/> puts it back.</param>
    public QuantLinear(string layerName, Linear linear) : base(nameof(QuantLinear))
    {
        ArgumentException.ThrowIfNullOrEmpty(layerName);
        ArgumentNullException.ThrowIfNull(linear);
        LayerName = layerName;
        _original = linear;
        weight = linear.weight;
        bias = linear.bias;
        InFeatures = weight.shape[1];
        OutFeatures = weight.shape[0];
        RegisterComponents();
        train(linear.training);
    }

    /// <summary>
    /// Registers <c>weight</c> and <c>bias</c> only: the wrapped original layer and the quantized
    /// versions are not part of the state dict.
    /// </summary>
    protected override void RegisterComponents()
    {
        if (!named_parameters(false).Any(p => p.name == "weight")) register_parameter("weight", weight);
        if (bias is not null && !named_parameters(false).Any(p => p.name == "bias")) register_parameter("bias", bias);
    }

    /// <summary>The dotted name of this layer in its model.</summary>
    public string LayerName { get; }

    /// <summary>Input features.</summary>
    public long InFeatures { get; }

    /// <summary>Output features.</summary>
    public long OutFeatures { get; }

    /// <summary>The float weight <c>[out, in]</c> (shared with the original layer).</summary>
    public Parameter Weight => weight;

    /// <summary>The float bias <c>[out]</c>, or null.</summary>
    public Parameter? Bias => bias;

    /// <summary>The config used when no <see cref="Policy"/> is set. Default: full precision.</summary>
    public LayerQuantConfig DefaultConfig { get; set; } = LayerQuantConfig.FullPrecision;

    /// <summary>The policy asked on every call for the current step's config; null = use <see cref="DefaultConfig"/>.</summary>
    public ITimestepPolicy? Policy { get; set; }

    /// <summary>Integer kernels that run the configs they support on CPU (inference); null = fake quantization only.</summary>
    public IntegerLinearKernel? IntegerKernel { get; set; }

    /// <summary>An observer that sees every input (calibration); null when none.</summary>
    public ILayerInputObserver? Observer { get; set; }

    /// <inheritdoc />
    Tensor IQuantizableLayer.Weight => weight;

    /// <inheritdoc />
    public bool IsQuantized => Policy is not null || DefaultConfig.Weight.IsEnabled || DefaultConfig.Activation.IsEnabled;

    /// <summary>The config the next call will use, at the current <see cref="TimestepContext"/> step.</summary>
    public LayerQuantConfig ActiveConfig => Policy?.Resolve(LayerName, TimestepContext.Current) ?? DefaultConfig;

    /// <summary>
    /// SmoothQuant factors <c>s</c> <c>[in]</c>, or null: when set, a quantized call computes
    /// <c>Q(x / s) · Q(W · diag(s))ᵀ</c> (the weight versions are quantized from <c>W · diag(s)</c>), which
    /// equals <c>x Wᵀ</c> in exact arithmetic but moves activation outliers into the weights. Full-precision
    /// calls ignore it.
    /// </summary>
    public Tensor? InputSmoothing => _smoothing;

    /// <summary>
    /// Sets (or with null removes) the SmoothQuant factors. Only while no weight version is held, since
    /// the versions must be quantized from the smoothed weight (see <see cref="SmoothedWeight"/>).
    /// </summary>
    public void SetInputSmoothing(Tensor? factors)
    {
        if (_versions.Count > 0)
            throw new LayerQuantizationException(LayerName, "smoothing factors must be set before any weight version is quantized (the versions are made from the smoothed weight).");
        if (factors is not null)
        {
            if (factors.Dimensions != 1 || factors.shape[0] != InFeatures)
                throw new LayerQuantizationException(LayerName, $"smoothing factors have shape [{string.Join(", ", factors.shape)}], expected [{InFeatures}].");
            using var check = torch.NewDisposeScope();
            if (!(factors.isfinite().all().item<bool>() && (factors > 0).all().item<bool>()))
                throw new LayerQuantizationException(LayerName, "smoothing factors must be finite and positive.");
        }
        DisposeSmoothing();
        if (factors is null) return;
        using var noGrad = torch.no_grad();
        _smoothing = factors.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
        _inverseSmoothing = _smoothing.reciprocal().DetachFromDisposeScope();
    }

    /// <summary>The weight the quantized versions stand for: <c>W · diag(s)</c> with smoothing, else <c>W</c> (a new tensor, detached).</summary>
    public Tensor SmoothedWeight()
    {
        using var noGrad = torch.no_grad();
        return _smoothing is null ? weight.detach().clone() : weight.detach() * _smoothing.unsqueeze(0);
    }

    /// <summary>The weight specs this layer holds a quantized version for.</summary>
    public IReadOnlyCollection<QuantSpec> WeightVersions => _versions.Keys;

    /// <summary>Bytes of all quantized weight versions held (integer codes, scales, zero points).</summary>
    public long QuantizedWeightBytes => _versions.Values.Sum(v => v.Integer.StorageBytes);

    /// <summary>Bytes of the float weight and bias.</summary>
    public long FloatWeightBytes => weight.numel() * weight.ElementSize + (bias is null ? 0 : bias.numel() * bias.ElementSize);

    /// <summary>True when a version for <paramref name="spec"/> is held.</summary>
    public bool HasWeightVersion(QuantSpec spec) => _versions.ContainsKey(spec);

    /// <summary>
    /// Adds (or replaces) the weight version of <paramref name="quantized"/>'s spec. Takes ownership.
    /// The shape must match the float weight.
    /// </summary>
    public void SetWeightVersion(QuantizedTensor quantized)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        if (!quantized.Shape.SequenceEqual(weight.shape))
            throw new LayerQuantizationException(LayerName, $"quantized weight has shape [{string.Join(", ", quantized.Shape)}], expected [{string.Join(", ", weight.shape)}].");
        if (_versions.Remove(quantized.Spec, out var old)) old.Dispose();
        _versions[quantized.Spec] = new WeightVersion(quantized, weight.dtype, weight.device);
    }

    /// <summary>
    /// Bytes of the float copies of the weight versions held now. The fake-quantized path multiplies
    /// with a dequantized float copy of a version, made on its first use and kept; the integer kernels
    /// never need it. See <see cref="ReleaseDequantizedWeights"/>.
    /// </summary>
    public long DequantizedWeightBytes => _versions.Values.Sum(v => v.DequantizedBytes);

    /// <summary>
    /// Frees the dequantized float copies of the weight versions (a fake-quantized call makes the one it
    /// needs again). <see cref="IntegerLinearKernel.Attach"/> calls it: on the integer kernels a version
    /// costs its codes and its packed form only. Returns the bytes freed.
    /// </summary>
    public long ReleaseDequantizedWeights()
    {
        long bytes = DequantizedWeightBytes;
        foreach (var v in _versions.Values) v.ReleaseDequantized();
        return bytes;
    }

    /// <summary>The integer form of the version for <paramref name="spec"/> (owned by the layer).</summary>
    public QuantizedTensor GetWeightVersion(QuantSpec spec) => Version(spec).Integer;

    /// <summary>Removes (and frees) the version for <paramref name="spec"/>; false when none was held.</summary>
    public bool RemoveWeightVersion(QuantSpec spec)
    {
        if (!_versions.Remove(spec, out var old)) return false;
        old.Dispose();
        return true;
    }

    /// <summary>Removes every quantized weight version.</summary>
    public void ClearWeightVersions()
    {
        foreach (var v in _versions.Values) v.Dispose();
        _versions.Clear();
    }

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

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (input.shape.Length == 0 || input.shape[^1] != InFeatures)
            throw new LayerQuantizationException(LayerName, $"input has shape [{string.Join(", ", input.shape)}], expected last dimension {InFeatures}.");
        Observer?.Observe(this, input, TimestepContext.Current);
        var config = ActiveConfig;
        if (!config.Weight.IsEnabled && !config.Activation.IsEnabled) return nn.functional.linear(input, weight, bias);
        // With SmoothQuant the versions stand for W·diag(s), so every quantized path takes x / s.
        using var smoothed = _inverseSmoothing is null ? null : input * _inverseSmoothing;
        var scaled = smoothed ?? input;
        if (IntegerKernel?.TryForward(this, scaled, config) is { } integer) return integer;
        var w = config.Weight.IsEnabled ? Version(config.Weight).Dequantized : FloatWeightForQuantizedInput();
        if (!config.Activation.IsEnabled) return nn.functional.linear(scaled, w, bias);
        using var x = QuantizeInput(scaled, config.Activation);
        return nn.functional.linear(x, w, bias);
    }

    /// <summary>
    /// <c>ops.ComposeEpilogue(this(ops.ComposePrologue(input)))</c>: the layer with the element-wise work
    /// around it (DiT's LayerNorm + modulate before, GELU or gated residual after). When the
    /// <see cref="IntegerKernel"/> takes the call, it runs as one fused integer call (the prologue
    /// applied to each row as it is quantized, the epilogue on each output tile); otherwise — no
    /// kernel, an unsupported config, an <see cref="Observer"/> or SmoothQuant factors — as those
    /// TorchSharp ops around an ordinary call, so calibration sees the same inputs as before.
    /// </summary>
    public Tensor ForwardFused(Tensor input, FusedLinearOps ops)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(ops);
        if (IntegerKernel is { } kernel && Observer is null && _inverseSmoothing is null
            && input.device_type == DeviceType.CPU && input.dtype == ScalarType.Float32 && input.shape.Length > 0 && input.shape[^1] == InFeatures
            && !(input.requires_grad && torch.is_grad_enabled()))
        {
            var config = ActiveConfig;
            if (IntegerLinearKernel.WhyNotSupported(config) is null && kernel.TryForward(this, input, config, ops) is { } fused) return fused;
        }
        using var x = ops.ComposePrologue(input);
        using var y = call(x);
        return ops.ComposeEpilogue(y);
    }

    private Tensor FloatWeightForQuantizedInput()
    {
        if (_smoothing is null) return weight;
        if (_smoothedWeight is null)
            using (torch.no_grad()) _smoothedWeight = (weight.detach() * _smoothing.unsqueeze(0)).DetachFromDisposeScope();
        return _smoothedWeight;
    }

    /// <summary>Quantize→dequantize of an input under <paramref name="spec"/> (dynamic, or with the calibrated static range).</summary>
    public Tensor QuantizeInput(Tensor input, QuantSpec spec)
    {
        if (!spec.IsEnabled) return input.alias();
        if (spec.Dynamic) return FakeQuantizer.QuantizeDequantize(input, spec);
        if (TimestepContext.Current is { } step && _stepRanges.TryGetValue(spec, out var groups))
            foreach (var g in groups)
                if (g.First <= step.StepIndex && step.StepIndex <= g.Last)
                    return FakeQuantizer.QuantizeDequantize(input, spec, g.Range);
        if (!_staticRanges.TryGetValue(spec, out var range))
            throw new LayerQuantizationException(LayerName, $"static activation spec {spec} has no calibrated range: calibrate the model first (a calibrator sets it).");
        return FakeQuantizer.QuantizeDequantize(input, spec, range);
    }

    /// <summary>Gives the wrapped layer back with the current parameters; this module must not be used afterwards.</summary>
    internal Linear Unwrap()
    {
        var original = _original ?? throw new InvalidOperationException($"QuantLinear '{LayerName}' was already unwrapped.");
        if (original.weight.Handle != weight.Handle) original.weight = weight;
        if (bias is not null && original.bias?.Handle != bias.Handle) original.bias = bias;
        original.train(training);
        _original = null;
        // The parameters now belong to the restored Linear again: unregister them so Dispose leaves them alone.
        ConditionallyRegisterParameter("weight", (Parameter?)null);
        ConditionallyRegisterParameter("bias", (Parameter?)null);
        ClearWeightVersions();
        ClearRanges();
        DisposeSmoothing();
        return original;
    }

    /// <inheritdoc />
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        foreach (var key in _versions.Keys.ToList())
            _versions[key] = _versions[key].To(weight.dtype, weight.device);
        foreach (var key in _staticRanges.Keys.ToList())
        {
            var old = _staticRanges[key];
            _staticRanges[key] = old.To(weight.device);
            old.Dispose();
        }
        foreach (var list in _stepRanges.Values)
            for (int i = 0; i < list.Count; i++)
            {
                var moved = list[i].Range.To(weight.device);
                list[i].Range.Dispose();
                list[i] = (list[i].First, list[i].Last, moved);
            }
        if (_smoothing is not null)
        {
            var s = _smoothing.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
            DisposeSmoothing();
            _smoothing = s;
            _inverseSmoothing = s.reciprocal().DetachFromDisposeScope();
        }
    }

    private void ClearRanges()
    {
        foreach (var r in _staticRanges.Values) r.Dispose();
        _staticRanges.Clear();
        foreach (var r in _stepRanges.Values.SelectMany(l => l)) r.Range.Dispose();
        _stepRanges.Clear();
    }

    private void DisposeSmoothing()
    {
        _smoothing?.Dispose();
        _inverseSmoothing?.Dispose();
        _smoothedWeight?.Dispose();
        _smoothing = _inverseSmoothing = _smoothedWeight = null;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ClearWeightVersions();
            ClearRanges();
            DisposeSmoothing();
        }
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override string ToString() => $"QuantLinear({LayerName}: {InFeatures}→{OutFeatures}, {ActiveConfig}, versions: {string.Join(", ", _versions.Keys)})";

    private WeightVersion Version(QuantSpec spec)
    {
        if (_versions.TryGetValue(spec, out var v)) return v;
        string held = _versions.Count == 0 ? "none" : string.Join("; ", _versions.Keys);
        throw new LayerQuantizationException(LayerName, $"no quantized weight version for {spec} (held: {held}). Quantize the layer for every config its policy uses.");
    }

    // A weight version: its integer form, and the dequantized float copy the fake-quantized path uses,
    // made on first use (in the layer's dtype and on its device) and kept until released.
    private sealed class WeightVersion(QuantizedTensor integer, ScalarType dtype, Device device) : IDisposable
    {
        private readonly object _gate = new();
        private Tensor? _dequantized;

        public QuantizedTensor Integer { get; } = integer;

        public long DequantizedBytes
        {
            get { lock (_gate) return _dequantized is null ? 0 : _dequantized.numel() * _dequantized.ElementSize; }
        }

        public Tensor Dequantized
        {
            get
            {
                lock (_gate)
                {
                    if (_dequantized is null)
                        using (torch.no_grad())
                            _dequantized = Integer.Dequantize().to(dtype, device, disposeAfter: true).DetachFromDisposeScope();
                    return _dequantized;
                }
            }
        }

        public WeightVersion To(ScalarType newType, Device newDevice)
        {
            if (dtype == newType && device.type == newDevice.type && device.index == newDevice.index) return this;
            var moved = Integer.To(newDevice);
            Dispose();
            return new WeightVersion(moved, newType, newDevice);
        }

        public void ReleaseDequantized()
        {
            lock (_gate)
            {
                _dequantized?.Dispose();
                _dequantized = null;
            }
        }

        public void Dispose()
        {
            Integer.Dispose();
            ReleaseDequantized();
        }
    }
}
