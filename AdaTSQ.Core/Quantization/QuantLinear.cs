// QuantLinear, the module: construction, the float weight and bias, the per-call config (default,
// policy, integer kernel, observer), forward and the fused forward, unwrapping, moving, disposing.
// The other concerns are partial files beside this one: QuantLinear.WeightVersions.cs (the quantized
// weight versions and their dequantized cache), QuantLinear.ActivationRanges.cs (static input ranges,
// per step group, and input quantization), QuantLinear.Smoothing.cs (SmoothQuant input smoothing),
// QuantLinear.StepSmoothing.cs (smoothing and weight versions per step group, ViDiT-Q) and
// QuantLinear.LowRank.cs (SVDQuant's full-precision low-rank branch), QuantLinear.InputShift.cs (HTG's input shift
// per step group) and QuantLinear.InputQuantizer.cs (a custom input quantizer, TQ-DiT's MRQ).
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
public sealed partial class QuantLinear : nn.Module<Tensor, Tensor>, IQuantizableLayer, IFusedLinear
{
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

    /// <inheritdoc />
    Tensor IQuantizableLayer.Weight => weight;

    /// <inheritdoc />
    public bool IsQuantized => Policy is not null || DefaultConfig.Weight.IsEnabled || DefaultConfig.Activation.IsEnabled;

    /// <summary>The config the next call will use, at the current <see cref="TimestepContext"/> step.</summary>
    public LayerQuantConfig ActiveConfig => Policy?.Resolve(LayerName, TimestepContext.Current) ?? DefaultConfig;

    /// <summary>Bytes of the float weight and bias.</summary>
    public long FloatWeightBytes => weight.numel() * weight.ElementSize + (bias is null ? 0 : bias.numel() * bias.ElementSize);

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (input.shape.Length == 0 || input.shape[^1] != InFeatures)
            throw new LayerQuantizationException(LayerName, $"input has shape [{string.Join(", ", input.shape)}], expected last dimension {InFeatures}.");
        Observer?.Observe(this, input, TimestepContext.Current);
        var config = ActiveConfig;
        if (!config.Weight.IsEnabled && !config.Activation.IsEnabled)
            return FullPrecisionThroughTransforms ? TransformedCall(input, ActiveFloatWeightForQuantizedInput(), QuantSpec.FullPrecision) : nn.functional.linear(input, weight, bias);
        // The integer kernels take the untransformed input: the shift, smoothing and the low-rank branch run inside the call.
        if (IntegerKernel?.TryForward(this, input, config) is { } integer) return integer;
        var w = config.Weight.IsEnabled ? ActiveVersion(config.Weight).Dequantized : ActiveFloatWeightForQuantizedInput();
        return TransformedCall(input, w, config.Activation);
    }

    /// <summary>
    /// Diagnostic (default false): when true, a full-precision call runs the arithmetic of a quantized call — HTG's input
    /// shift and shifted bias, the smoothing, the rotation, the low-rank branch — without quantizing anything, so that a
    /// test can check that a method's re-parameterization leaves the model's output unchanged. Slower; leave it off otherwise.
    /// </summary>
    public bool FullPrecisionThroughTransforms { get; set; }

    // A quantized call with weight w (a version, or the transformed float weight) and activation spec `activation`: with
    // SmoothQuant and/or a rotation the versions stand for W·diag(s)·Rᵀ, so every quantized path takes (x / s)·Rᵀ; with an
    // HTG input shift z it takes ((x − z) / s)·Rᵀ and the bias b + W·z (QuantLinear.InputShift.cs).
    private Tensor TransformedCall(Tensor input, Tensor w, QuantSpec activation)
    {
        using var shifted = ShiftInput(input);
        using var smoothed = TransformInput(shifted ?? input);
        var scaled = smoothed ?? shifted ?? input;
        var b = ActiveQuantizedBias;
        if (!activation.IsEnabled) return AddLowRank(nn.functional.linear(scaled, w, b), scaled);
        using var x = QuantizeInput(scaled, activation);
        return AddLowRank(nn.functional.linear(x, w, b), scaled);
    }

    /// <summary>
    /// <c>ops.ComposeEpilogue(this(ops.ComposePrologue(input)))</c>: the layer with the element-wise work
    /// around it (DiT's LayerNorm + modulate before, GELU or gated residual after). When the
    /// <see cref="IntegerKernel"/> takes the call, it runs as one fused integer call (the prologue
    /// applied to each row as it is quantized, then the SmoothQuant input scale and the SVDQuant branch's
    /// down-projection, with a Hadamard <see cref="InputRotation"/> between them its fast Walsh–Hadamard transform;
    /// the branch's up-projection, then the epilogue, on each output tile); otherwise — no kernel, an unsupported
    /// config, an <see cref="Observer"/>, or a rotation without a native form under a LayerNorm prologue — as those
    /// TorchSharp ops around an ordinary call, so calibration sees the same inputs as before.
    /// </summary>
    public Tensor ForwardFused(Tensor input, FusedLinearOps ops)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(ops);
        if (IntegerKernel is { } kernel && Observer is null && (_rotation is null || !ops.HasPrologue || IntegerLinearKernel.CanFuse(_rotation))
            && input.device_type == DeviceType.CPU && input.dtype == ScalarType.Float32 && input.shape.Length > 0 && input.shape[^1] == InFeatures
            && !(input.requires_grad && torch.is_grad_enabled()))
        {
            var config = ActiveConfig;
            if (IntegerLinearKernel.WhyNotSupported(this, config) is null && kernel.TryForward(this, input, config, ops) is { } fused) return fused;
        }
        using var x = ops.ComposePrologue(input);
        using var y = call(x);
        return ops.ComposeEpilogue(y);
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
        DisposeLowRank();
        DisposeSmoothing();
        DisposeStepSmoothing();
        DisposeRotation();
        DisposeInputShift();
        _inputQuantizer = null;
        return original;
    }

    /// <inheritdoc />
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        MoveWeightVersions();
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
        if (_lowRank is not null)
        {
            _lowRank = _lowRank.To(weight.dtype, weight.device);
            InvalidateSmoothedWeight();
        }
        MoveStepSmoothing();
        MoveRotation(weight.device);
        MoveInputShift();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ClearWeightVersions();
            ClearRanges();
            DisposeLowRank();
            DisposeSmoothing();
            DisposeStepSmoothing();
            DisposeRotation();
            DisposeInputShift();
            _inputQuantizer = null;
        }
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override string ToString() => $"QuantLinear({LayerName}: {InFeatures}→{OutFeatures}, {ActiveConfig}, versions: {string.Join(", ", _versions.Keys)}{(_inputQuantizer is { } q ? $", input quantizer: {q.Description}" : "")})";
}
