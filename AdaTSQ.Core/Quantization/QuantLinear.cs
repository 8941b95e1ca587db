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
public sealed class QuantLinear : nn.Module<Tensor, Tensor>
{
    private readonly Dictionary<QuantSpec, WeightVersion> _versions = new();
    private readonly Dictionary<QuantSpec, QuantParams> _staticRanges = new();
    private Linear? _original;
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

    /// <summary>The config the next call will use, at the current <see cref="TimestepContext"/> step.</summary>
    public LayerQuantConfig ActiveConfig => Policy?.Resolve(LayerName, TimestepContext.Current) ?? DefaultConfig;

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
        Tensor dequantized;
        using (torch.no_grad())
            dequantized = quantized.Dequantize().to(weight.dtype, weight.device, disposeAfter: true).DetachFromDisposeScope();
        if (_versions.Remove(quantized.Spec, out var old)) old.Dispose();
        _versions[quantized.Spec] = new WeightVersion(quantized, dequantized);
    }

    /// <summary>The integer form of the version for <paramref name="spec"/> (owned by the layer).</summary>
    public QuantizedTensor GetWeightVersion(QuantSpec spec) => Version(spec).Integer;

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
        activationSpec.Validate(QuantTarget.Activation, InFeatures, $"layer '{LayerName}'");
        if (activationSpec.Dynamic)
            throw new LayerQuantizationException(LayerName, $"activation spec {activationSpec} is dynamic: it takes no calibrated range.");
        if (!double.IsFinite(min) || !double.IsFinite(max) || min > max)
            throw new LayerQuantizationException(LayerName, $"static input range [{min}, {max}] is not a finite, ordered range.");
        using var lo = torch.tensor((float)min).reshape(1, 1, 1);
        using var hi = torch.tensor((float)max).reshape(1, 1, 1);
        var p = QuantParams.FromRange(lo, hi, activationSpec);
        var moved = p.To(weight.device);
        p.Dispose();
        if (_staticRanges.Remove(activationSpec, out var old)) old.Dispose();
        _staticRanges[activationSpec] = moved;
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (input.shape.Length == 0 || input.shape[^1] != InFeatures)
            throw new LayerQuantizationException(LayerName, $"input has shape [{string.Join(", ", input.shape)}], expected last dimension {InFeatures}.");
        Observer?.Observe(this, input, TimestepContext.Current);
        var config = ActiveConfig;
        if (IntegerKernel?.TryForward(this, input, config) is { } integer) return integer;
        var w = config.Weight.IsEnabled ? Version(config.Weight).Dequantized : weight;
        if (!config.Activation.IsEnabled) return nn.functional.linear(input, w, bias);
        using var x = QuantizeInput(input, config.Activation);
        return nn.functional.linear(x, w, bias);
    }

    /// <summary>Quantize→dequantize of an input under <paramref name="spec"/> (dynamic, or with the calibrated static range).</summary>
    public Tensor QuantizeInput(Tensor input, QuantSpec spec)
    {
        if (!spec.IsEnabled) return input.alias();
        if (spec.Dynamic) return FakeQuantizer.QuantizeDequantize(input, spec);
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
        foreach (var r in _staticRanges.Values) r.Dispose();
        _staticRanges.Clear();
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
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ClearWeightVersions();
            foreach (var r in _staticRanges.Values) r.Dispose();
            _staticRanges.Clear();
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

    private sealed class WeightVersion(QuantizedTensor integer, Tensor dequantized) : IDisposable
    {
        public QuantizedTensor Integer { get; } = integer;
        public Tensor Dequantized { get; } = dequantized;

        public WeightVersion To(ScalarType dtype, Device device)
        {
            if (Dequantized.device_type == device.type && Dequantized.device_index == device.index && Dequantized.dtype == dtype) return this;
            var moved = Integer.To(device);
            var deq = Dequantized.to(dtype, device, copy: true).DetachFromDisposeScope();
            Dispose();
            return new WeightVersion(moved, deq);
        }

        public void Dispose()
        {
            Integer.Dispose();
            Dequantized.Dispose();
        }
    }
}
