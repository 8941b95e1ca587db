using System.Runtime.CompilerServices;
using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Integer inference for <see cref="QuantLinear"/>: runs a layer's call on the AdaTSQ.Kernels
/// integer GEMMs (W8A8, W4A8, W4A4) instead of fake quantization, when the call's config and input
/// allow it. Weights are packed once per quantized weight version and packing group, and cached.
/// </summary>
/// <remarks>
/// <para>Supported: float32 CPU inputs without autograd; symmetric weights of 2–8 bits (2–4 bits
/// run on the 4-bit kernel, 5–8 on the 8-bit one), per channel, per tensor or per group (groups a
/// multiple of 4, of 8 for ≤ 4 bits); dynamic symmetric activations of 2–8 bits, per token or per token ×
/// per group along K (<see cref="QuantSpec.Activation(int, int, bool, double)"/>; the group must divide K and
/// fit the weight grouping, see <see cref="ActivationGrouping"/>: per-channel weights and weights whose group is a
/// multiple of it are packed at the activation group, a smaller weight group must divide it).
/// Everything else (asymmetric grids, static activation ranges, a custom input quantizer
/// (<see cref="QuantLinear.InputQuantizer"/>), weight-only configs, other devices or dtypes) falls back to the fake-quantized path, or throws
/// <see cref="NotSupportedException"/> when <see cref="Strict"/> is set.</para>
/// <para>Dispose it to free the packed weights (they are also freed when their quantized weight
/// version is collected).</para>
/// </remarks>
public sealed class IntegerLinearKernel : IDisposable
{
    // Per weight version, the packed weights per packing group (the weights' own group, or the activation group).
    private readonly ConditionalWeakTable<QuantizedTensor, Dictionary<int, PackedWeights>> _packed = new();
    private readonly object _gate = new();

    /// <summary>Creates the kernel with <paramref name="options"/> (null: <see cref="KernelOptions.Default"/> with torch's thread count).</summary>
    public IntegerLinearKernel(KernelOptions? options = null)
    {
        Options = options ?? new KernelOptions { Threads = torch.get_num_threads() };
    }

    /// <summary>ISA and threads of every call.</summary>
    public KernelOptions Options { get; }

    /// <summary>Bytes of the packed weights cached now (codes, column sums, scales): the weight memory the kernels read.</summary>
    public long PackedWeightBytes
    {
        get
        {
            lock (_gate)
            {
                long bytes = 0;
                foreach (var (_, byGroup) in _packed)
                    foreach (var packed in byGroup.Values) bytes += packed.StorageBytes;
                return bytes;
            }
        }
    }

    /// <summary>When true, a call the kernels cannot run throws <see cref="NotSupportedException"/> instead of falling back. Default false.</summary>
    public bool Strict { get; init; }

    /// <summary>Calls that ran on the integer kernels (for reports and tests).</summary>
    public long IntegerCalls => Interlocked.Read(ref _integerCalls);

    /// <summary>Calls that fell back to fake quantization.</summary>
    public long FallbackCalls => Interlocked.Read(ref _fallbackCalls);

    /// <summary>Wall time spent in calls that ran on the integer kernels (activation quantization, GEMM and output allocation included).</summary>
    public TimeSpan KernelTime => System.Diagnostics.Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _kernelTicks));

    private long _integerCalls, _fallbackCalls, _kernelTicks;

    /// <summary>
    /// Sets <paramref name="kernel"/> (or null) on every <see cref="QuantLinear"/> of <paramref name="model"/>;
    /// returns how many. Attaching a kernel also frees the layers' dequantized float weight copies
    /// (<see cref="QuantLinear.ReleaseDequantizedWeights"/>): the kernels read the packed integer weights,
    /// and a call that falls back to fake quantization makes the copy it needs again.
    /// </summary>
    public static int Attach(nn.Module model, IntegerLinearKernel? kernel)
    {
        ArgumentNullException.ThrowIfNull(model);
        int count = 0;
        foreach (var (_, module) in model.named_modules())
            if (module is QuantLinear q)
            {
                q.IntegerKernel = kernel;
                if (kernel is not null) q.ReleaseDequantizedWeights();
                count++;
            }
        return count;
    }

    /// <summary>Why <paramref name="config"/> cannot run on the integer kernels; null when it can.</summary>
    public static string? WhyNotSupported(LayerQuantConfig config) => WhyNotSupported(config, null);

    /// <summary>
    /// Why <paramref name="config"/> cannot run on the integer kernels for a layer with <paramref name="inFeatures"/>
    /// inputs (null: not known, only what does not depend on it is checked); null when it can.
    /// </summary>
    public static string? WhyNotSupported(LayerQuantConfig config, long? inFeatures)
    {
        ArgumentNullException.ThrowIfNull(config);
        var w = config.Weight;
        var a = config.Activation;
        if (!w.IsEnabled || !a.IsEnabled) return $"{config}: the integer kernels need both weights and activations quantized.";
        if (!w.Symmetric) return $"{config}: asymmetric (zero-point) weights are not supported by the integer kernels.";
        if (w.Granularity == QuantGranularity.PerGroup && w.GroupSize % (w.Bits <= 4 ? 8 : 4) != 0)
            return $"{config}: weight group size {w.GroupSize} is not a multiple of {(w.Bits <= 4 ? 8 : 4)}.";
        if (!a.Dynamic || a.Granularity is not (QuantGranularity.PerToken or QuantGranularity.PerGroup) || !a.Symmetric)
            return $"{config}: activations must be dynamic, symmetric and per token (or per token × group) (got {a}).";
        if (a.Granularity == QuantGranularity.PerGroup)
        {
            if (a.GroupSize <= 0) return $"{config}: per-group activations need a positive group size (got {a.GroupSize}).";
            int wGroup = WeightGroupSize(w);
            // K unknown: any K both groups divide (only the groups' relation is checked).
            long k = inFeatures ?? (long)a.GroupSize * Math.Max(1, wGroup);
            if (k > int.MaxValue) return $"{config}: K = {k} is too large for the integer kernels.";
            if (!ActivationGrouping.TryPackingGroup(wGroup, a.GroupSize, (int)k, w.Bits, out _, out string? why))
                return $"{config} (weight {w}, activation {a}): {why}";
        }
        return null;
    }

    /// <summary>
    /// Why a call of <paramref name="layer"/> with <paramref name="config"/> cannot run on the integer kernels; null when it can.
    /// Besides <see cref="WhyNotSupported(LayerQuantConfig, long?)"/> at the layer's input features, a layer whose inputs are
    /// quantized by a custom <see cref="QuantLinear.InputQuantizer"/> is refused: the kernels quantize each row on their own
    /// uniform grid and cannot run it.
    /// </summary>
    public static string? WhyNotSupported(QuantLinear layer, LayerQuantConfig config)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(config);
        if (config.Activation.IsEnabled && layer.InputQuantizer is { } custom)
            return $"{config}: the inputs use the custom activation quantizer '{custom.Description}', which the integer kernels do not run.";
        return WhyNotSupported(config, layer.InFeatures);
    }

    // True when the native prologue can run the rotation (it has a native form).
    internal static bool CanFuse(IInputRotation rotation)
    {
        using var scope = torch.NewDisposeScope();
        return rotation.ToFusedRotation() is not null;
    }

    // The weights' own group size for the kernels: 0 for per-channel and per-tensor scales.
    private static int WeightGroupSize(QuantSpec weight) => weight.Granularity == QuantGranularity.PerGroup ? weight.GroupSize : 0;

    // Columns per activation scale of a supported config: 0 for per-token.
    private static int ActivationGroupSize(QuantSpec activation) => activation.Granularity == QuantGranularity.PerGroup ? activation.GroupSize : 0;

    /// <summary>
    /// The layer's output computed on the integer kernels, or null when this call cannot run on them
    /// (see the remarks). Called by <see cref="QuantLinear.forward"/> and, with <paramref name="ops"/>,
    /// by <see cref="QuantLinear.ForwardFused"/>. The layer's SmoothQuant factors and SVDQuant low-rank
    /// branch run inside the integer call (<see cref="LinearTransforms"/>: the input scale <c>1 / s</c> after the
    /// prologue, then a Hadamard <see cref="QuantLinear.InputRotation"/> (<see cref="IInputRotation.ToFusedRotation"/>),
    /// the branch's down-projection while each row is quantized, its up-projection added after the bias, before the
    /// epilogue). An HTG input shift z (<see cref="QuantLinear.InputShiftAt"/>) is subtracted from the modulation's shift
    /// under a LayerNorm prologue, else from the input before the call, and the bias is <c>b + W·z</c>. A rotation without a native form is applied in TorchSharp before the call (with the smoothing), so a
    /// call with such a rotation and a prologue in <paramref name="ops"/> is not taken.
    /// </summary>
    /// <param name="layer">The layer (its packed weight version, bias, smoothing, rotation and low-rank branch are used).</param>
    /// <param name="input">Float32 CPU input <c>[..., K]</c>: the layer's input as its caller has it (before the
    /// layer's smoothing and rotation; before <paramref name="ops"/>' prologue).</param>
    /// <param name="config">The call's config.</param>
    /// <param name="ops">Work fused into the call (LayerNorm + modulate prologue, activation and gated
    /// residual epilogue), or null; its tensors are made contiguous here when they are not.</param>
    public Tensor? TryForward(QuantLinear layer, Tensor input, LayerQuantConfig config, FusedLinearOps? ops = null)
    {
        string? why = WhyNotSupported(layer, config);
        if (why is null && (input.device_type != DeviceType.CPU || input.dtype != ScalarType.Float32))
            why = $"input on {input.device} as {input.dtype}: the integer kernels take float32 CPU tensors.";
        if (why is null && input.requires_grad && torch.is_grad_enabled())
            why = "the input requires gradients: integer inference has no backward pass.";
        if (why is null && layer.InputRotation is { } r && ops is not null && ops.HasPrologue && !IntegerLinearKernel.CanFuse(r))
            why = $"the layer's input rotation '{r.Description}' has no native form: the LayerNorm prologue cannot run before it in one call.";
        if (why is not null)
        {
            if (!config.Weight.IsEnabled && !config.Activation.IsEnabled) return null; // full precision: nothing to run
            if (Strict) throw new NotSupportedException($"layer '{layer.LayerName}': {why}");
            Interlocked.Increment(ref _fallbackCalls);
            return null;
        }
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int activationGroup = ActivationGroupSize(config.Activation);
        // A nested weight version (QuantLinear.NestWeightVersions) is packed for this call only from the wider version's
        // codes, so that its codes and packed form are never held: a dynamic policy keeps the memory of its widest width.
        using var transientPack = layer.ActiveWeightVersionIsNested(config.Weight) ? PackNested(layer, config.Weight, activationGroup) : null;
        var packed = transientPack ?? Packed(layer, config.Weight, activationGroup);
        using var scope = torch.NewDisposeScope();
        var x = input.contiguous();
        // HTG's input shift z of the current step (QuantLinear.InputShift.cs): under a LayerNorm prologue it joins the
        // modulation's shift (LN(x)·(1 + γ) + β − z, the adaLN fold of the paper, per call), else it is subtracted here;
        // the bias becomes b + W·z either way.
        var inputShift = layer.ActiveInputShift;
        Tensor? foldedShift = null;
        if (inputShift is { } sh)
        {
            var z = sh.Shift.detach().to(ScalarType.Float32, torch.CPU);
            if (ops is { LayerNorm: true })
            {
                long samples = ops.Shift?.shape[0] ?? ops.Scale?.shape[0] ?? 1;
                foldedShift = ops.Shift is null ? (-z).unsqueeze(0).expand(samples, -1).contiguous() : (ops.Shift - z.unsqueeze(0)).contiguous();
            }
            else x = (x - z).contiguous();
        }
        LinearTransforms? transforms = null;
        var inverseSmoothing = layer.InverseInputSmoothing;
        var rotation = layer.InputRotation?.ToFusedRotation();  // null: no rotation, or one without a native form
        if (layer.InputRotation is not null && rotation is null)
        {
            x = layer.TransformedInput(x).contiguous();  // (x / s)·Rᵀ in TorchSharp; the branch, if any, then acts on it
            inverseSmoothing = null;
        }
        if (inverseSmoothing is not null || rotation is not null || layer.LowRank is not null)
            transforms = new LinearTransforms
            {
                Rotation = rotation,
                InputScale = inverseSmoothing?.detach().to(ScalarType.Float32, torch.CPU).contiguous(),
                LowRankDown = layer.LowRank?.Down.detach().to(ScalarType.Float32, torch.CPU).contiguous(),
                LowRankUp = layer.LowRank?.Up.detach().to(ScalarType.Float32, torch.CPU).contiguous(),
            };
        var biasSource = inputShift is { } shifted ? shifted.Bias : layer.Bias;
        var bias = biasSource is null ? null : biasSource.detach().to(ScalarType.Float32).contiguous();
        var fused = ops is null ? null : new FusedLinearOps
        {
            LayerNorm = ops.LayerNorm, LayerNormEpsilon = ops.LayerNormEpsilon, Activation = ops.Activation,
            Shift = foldedShift ?? ops.Shift?.contiguous(), Scale = ops.Scale?.contiguous(), Residual = ops.Residual?.contiguous(), Gate = ops.Gate?.contiguous(),
        };
        var y = TorchIntegerGemm.Linear(x, packed, config.Activation.Bits, bias, config.Activation.ClipRatio, Options, fused, activationGroup, transforms);
        var result = y.MoveToOuterDisposeScope();
        Interlocked.Increment(ref _integerCalls);
        Interlocked.Add(ref _kernelTicks, System.Diagnostics.Stopwatch.GetTimestamp() - start);
        return result;
    }

    private static PackedWeights PackNested(QuantLinear layer, QuantSpec spec, int activationGroupSize)
    {
        using var q = layer.MaterializeActiveWeightVersion(spec);
        return Pack(q, activationGroupSize);
    }

    // The packed weights of the layer's weight version for the packing group the activation group needs:
    // keyed on the version (collected with it) and on the packing group.
    private PackedWeights Packed(QuantLinear layer, QuantSpec spec, int activationGroupSize)
    {
        var q = layer.ActiveWeightVersion(spec);  // the current step group's version under per-step smoothing
        int group = ActivationGrouping.PackingGroup(WeightGroupSize(spec), activationGroupSize, checked((int)q.Shape[^1]), spec.Bits);
        lock (_gate)
        {
            var byGroup = _packed.GetValue(q, _ => new Dictionary<int, PackedWeights>());
            if (byGroup.TryGetValue(group, out var cached)) return cached;
            var packed = Pack(q, activationGroupSize);
            byGroup.Add(group, packed);
            return packed;
        }
    }

    /// <summary>Packs a symmetric quantized weight <c>[N, K]</c> into the kernels' layout, at its own group (per-token activations).</summary>
    public static PackedWeights Pack(QuantizedTensor weight) => Pack(weight, 0);

    /// <summary>
    /// Packs a symmetric quantized weight <c>[N, K]</c> for activations quantized per token × per group of
    /// <paramref name="activationGroupSize"/> inputs (0: per token): at the packing group
    /// <see cref="ActivationGrouping.PackingGroup"/> plans, with the weight scales replicated over the groups
    /// they cover when that group is finer than the weights' own (per channel, or a multiple of the activation group).
    /// </summary>
    /// <exception cref="NotSupportedException">The weight and activation groups do not fit (see <see cref="ActivationGrouping"/>).</exception>
    public static PackedWeights Pack(QuantizedTensor weight, int activationGroupSize)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var spec = weight.Spec;
        if (weight.Shape.Length != 2) throw new ArgumentException($"expected a 2-D weight, got shape [{string.Join(", ", weight.Shape)}].", nameof(weight));
        if (!spec.Symmetric) throw new NotSupportedException($"weight spec {spec}: asymmetric weights are not supported by the integer kernels.");
        using var scope = torch.NewDisposeScope();
        long n = weight.Shape[0], k = weight.Shape[1];
        var codes = weight.Codes.cpu().contiguous();
        var scales = weight.Parameters.Scale.cpu().to(ScalarType.Float32);
        int groupSize = WeightGroupSize(spec);
        if (spec.Granularity == QuantGranularity.PerTensor) scales = scales.reshape(1, 1).expand(n, 1);
        scales = scales.reshape(n, -1).contiguous();
        int packingGroup = ActivationGrouping.PackingGroup(groupSize, activationGroupSize, checked((int)k), spec.Bits);
        if (packingGroup != groupSize)
        {
            // per channel → one scale per packing group; weight group a multiple of it → each scale repeated
            long repeat = (groupSize > 0 ? groupSize : k) / packingGroup;
            scales = scales.repeat_interleave(repeat, dim: 1).contiguous();
            groupSize = packingGroup;
        }
        if (spec.Bits <= 4 != weight.IsPacked)
            throw new NotSupportedException($"weight spec {spec}: codes are {(weight.IsPacked ? "" : "not ")}packed two per byte, which the kernels do not expect.");
        return TorchIntegerGemm.PackWeights(codes, scales, checked((int)k), spec.Bits <= 4 ? 4 : 8, groupSize);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var (_, byGroup) in _packed)
                foreach (var packed in byGroup.Values) packed.Dispose();
            _packed.Clear();
        }
    }
}
