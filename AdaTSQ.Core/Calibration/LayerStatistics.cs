using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Calibration;

/// <summary>
/// What calibration learned about one layer's inputs: overall and per-step ranges, per-channel
/// maxima and, when asked for, the weighted second moment <c>Σ α·x·xᵀ</c>. Tensors live on the
/// layer's device. Owns its tensors.
/// </summary>
public sealed class LayerStatistics : IDisposable
{
    private readonly Dictionary<int, StepRange> _steps = new();
    private readonly Dictionary<int, (Tensor Min, Tensor Max)> _stepChannels = new();
    private Tensor? _channelAbsMax;
    private Tensor? _channelMin;
    private Tensor? _channelMax;
    private Tensor? _secondMoment;

    /// <summary>Creates empty statistics for a layer with <paramref name="inFeatures"/> inputs.</summary>
    /// <param name="layerName">The layer's dotted name.</param>
    /// <param name="inFeatures">Input features.</param>
    /// <param name="collectSecondMoment">Accumulate Σ α·x·xᵀ.</param>
    /// <param name="collectStepChannels">Keep per-channel extremes per step (see <see cref="CalibrationRequirements.PerStepChannelExtremes"/>).</param>
    public LayerStatistics(string layerName, long inFeatures, bool collectSecondMoment, bool collectStepChannels = false)
    {
        CollectsStepChannels = collectStepChannels;
        LayerName = layerName;
        InFeatures = inFeatures;
        CollectsSecondMoment = collectSecondMoment;
    }

    /// <summary>The layer's dotted name.</summary>
    public string LayerName { get; }

    /// <summary>Input features.</summary>
    public long InFeatures { get; }

    /// <summary>Whether per-channel extremes are kept per step.</summary>
    public bool CollectsStepChannels { get; }

    /// <summary>Whether <see cref="SecondMoment"/> is accumulated.</summary>
    public bool CollectsSecondMoment { get; }

    /// <summary>Number of forward calls observed.</summary>
    public int Calls { get; private set; }

    /// <summary>Input rows (tokens × batch) observed.</summary>
    public long Rows { get; private set; }

    /// <summary>Smallest input value seen (+∞ before any input).</summary>
    public double InputMin { get; private set; } = double.PositiveInfinity;

    /// <summary>Largest input value seen (−∞ before any input).</summary>
    public double InputMax { get; private set; } = double.NegativeInfinity;

    /// <summary>max |x_j| over all rows, per input channel <c>[in]</c> (float32); null before any input.</summary>
    public Tensor? ChannelAbsMax => _channelAbsMax;

    /// <summary>min x_j over all rows, per input channel <c>[in]</c> (float32); null before any input.</summary>
    public Tensor? ChannelMin => _channelMin;

    /// <summary>max x_j over all rows, per input channel <c>[in]</c> (float32); null before any input.</summary>
    public Tensor? ChannelMax => _channelMax;

    /// <summary>Σ α·x·xᵀ over all rows <c>[in, in]</c> (float64), α = the calibrator's step weight; null when not collected.</summary>
    public Tensor? SecondMoment => _secondMoment;

    /// <summary>
    /// True when the channel extremes (<see cref="ChannelMin"/>, <see cref="ChannelMax"/>, <see cref="ChannelAbsMax"/>),
    /// the overall and the per-step ranges are bounds that hold the true ones rather than the observed values
    /// (the statistics of rotated inputs, see <see cref="Rotated"/>).
    /// </summary>
    public bool ExtremesAreBounds { get; private init; }

    /// <summary>Σ α over all rows: the normaliser of <see cref="SecondMoment"/>.</summary>
    public double SecondMomentWeight { get; private set; }

    /// <summary>Input ranges per sampling step index (steps seen only; empty when no step was set).</summary>
    public IReadOnlyDictionary<int, StepRange> Steps => _steps;

    /// <summary>Bytes of tensors these statistics hold (second moment, channel and per-step channel extremes).</summary>
    public long Bytes =>
        (_secondMoment?.numel() ?? 0) * 8
        + ((_channelAbsMax?.numel() ?? 0) + (_channelMin?.numel() ?? 0) + (_channelMax?.numel() ?? 0)) * 4
        + _stepChannels.Values.Sum(c => (c.Min.numel() + c.Max.numel()) * 4);

    /// <summary>True when at least one input was observed.</summary>
    public bool HasData => Rows > 0;

    /// <summary>
    /// Adds one input <c>[..., in]</c> with weight <paramref name="weight"/> (α of its step).
    /// </summary>
    /// <exception cref="CalibrationException">The input contains NaN or ±Inf, or has the wrong width.</exception>
    public void Add(Tensor input, TimestepInfo? step, double weight)
    {
        if (input.shape.Length == 0 || input.shape[^1] != InFeatures)
            throw new CalibrationException($"layer '{LayerName}': calibration input has shape [{string.Join(", ", input.shape)}], expected last dimension {InFeatures}.");
        if (!(weight >= 0) || double.IsInfinity(weight))
            throw new CalibrationException($"layer '{LayerName}': calibration weight {weight} is not a finite non-negative number.");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = input.detach().reshape(-1, InFeatures).to(ScalarType.Float32);
        long rows = x.shape[0];
        if (rows == 0) return;
        if (!x.isfinite().all().item<bool>())
            throw new CalibrationException($"layer '{LayerName}': calibration input{(step is { } s ? $" at {s}" : "")} contains NaN or infinite values.");
        double min = x.min().item<float>(), max = x.max().item<float>();
        var cmin = x.amin([0]);
        var cmax = x.amax([0]);
        var absMax = torch.maximum(cmin.abs(), cmax.abs());
        if (_channelAbsMax is null)
        {
            _channelAbsMax = absMax.DetachFromDisposeScope();
            _channelMin = cmin.clone().DetachFromDisposeScope();
            _channelMax = cmax.clone().DetachFromDisposeScope();
        }
        else
        {
            _channelAbsMax.copy_(torch.maximum(_channelAbsMax, absMax));
            _channelMin!.copy_(torch.minimum(_channelMin, cmin));
            _channelMax!.copy_(torch.maximum(_channelMax, cmax));
        }
        if (CollectsSecondMoment && weight > 0)
        {
            var xd = x.to(ScalarType.Float64);
            var xtx = xd.t().mm(xd);
            if (_secondMoment is null) _secondMoment = (xtx * weight).DetachFromDisposeScope();
            else _secondMoment.add_(xtx, alpha: weight);
            SecondMomentWeight += weight * rows;
        }
        Calls++;
        Rows += rows;
        InputMin = Math.Min(InputMin, min);
        InputMax = Math.Max(InputMax, max);
        if (step is { } st)
        {
            var r = new StepRange(min, max, rows);
            _steps[st.StepIndex] = _steps.TryGetValue(st.StepIndex, out var old) ? old.Merge(r) : r;
            if (CollectsStepChannels) AddStepChannels(st.StepIndex, cmin, cmax);
        }
    }

    private void AddStepChannels(int step, Tensor cmin, Tensor cmax)
    {
        if (_stepChannels.TryGetValue(step, out var c))
        {
            c.Min.copy_(torch.minimum(c.Min, cmin));
            c.Max.copy_(torch.maximum(c.Max, cmax));
        }
        else _stepChannels[step] = (cmin.clone().DetachFromDisposeScope(), cmax.clone().DetachFromDisposeScope());
    }

    /// <summary>The normalised second moment Σ α x xᵀ / Σ α (a new tensor), or null when not collected.</summary>
    public Tensor? MeanSecondMoment() =>
        _secondMoment is null || SecondMomentWeight <= 0 ? null : _secondMoment / SecondMomentWeight;

    /// <summary>
    /// The statistics of the smoothed inputs <c>x / s</c> (SmoothQuant) for per-channel factors
    /// <paramref name="s"/> <c>[in]</c> &gt; 0, computed exactly from these: channel extremes divided by
    /// s, per-step ranges from the per-step channel extremes (only when they were kept: otherwise the
    /// smoothed statistics have no per-step ranges), and <c>Σ α (x/s)(x/s)ᵀ = H / (s sᵀ)</c>.
    /// A new object the caller owns.
    /// </summary>
    public LayerStatistics Smoothed(Tensor s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Dimensions != 1 || s.shape[0] != InFeatures)
            throw new CalibrationException($"layer '{LayerName}': smoothing factors have shape [{string.Join(", ", s.shape)}], expected [{InFeatures}].");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var sf = s.to(ScalarType.Float32);
        var result = new LayerStatistics(LayerName, InFeatures, CollectsSecondMoment, CollectsStepChannels)
        {
            Calls = Calls, Rows = Rows, SecondMomentWeight = SecondMomentWeight,
        };
        if (_channelMin is not null)
        {
            var lo = (_channelMin.to(sf.device) / sf);
            var hi = (_channelMax!.to(sf.device) / sf);
            result._channelMin = lo.DetachFromDisposeScope();
            result._channelMax = hi.DetachFromDisposeScope();
            result._channelAbsMax = torch.maximum(lo.abs(), hi.abs()).DetachFromDisposeScope();
            result.InputMin = lo.min().item<float>();
            result.InputMax = hi.max().item<float>();
        }
        foreach (var (step, (min, max)) in _stepChannels)
        {
            var lo = (min.to(sf.device) / sf).DetachFromDisposeScope();
            var hi = (max.to(sf.device) / sf).DetachFromDisposeScope();
            result._stepChannels[step] = (lo, hi);
            result._steps[step] = new StepRange(lo.min().item<float>(), hi.max().item<float>(), _steps[step].Rows);
        }
        if (_secondMoment is not null)
        {
            var inv = 1.0 / s.to(ScalarType.Float64, _secondMoment.device);
            result._secondMoment = (_secondMoment * inv.unsqueeze(1) * inv.unsqueeze(0)).DetachFromDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// The statistics of the rotated inputs <c>x·Rᵀ</c> for an orthogonal <paramref name="rotation"/> <c>R</c> (QuaRot,
    /// arXiv 2404.00456). Exact: the second moment <c>Σ α (R x)(R x)ᵀ = R · (Σ α x xᵀ) · Rᵀ</c> (what GPTQ needs), the
    /// row count and weights. Not derivable from these statistics: the extremes of a rotated channel
    /// <c>(R x)_i = Σ_j R_ij x_j</c> depend on which channels peak together in the same row, which per-channel
    /// extremes do not record. They are replaced by the interval bound <c>Σ_j max(R_ij·lo_j, R_ij·hi_j)</c> (and its
    /// mirror for the minimum) from the per-channel extremes <c>[lo_j, hi_j]</c>: the true extremes lie inside it, but
    /// for a Hadamard <c>R</c> (all <c>|R_ij| = 1/√K</c>) it can be up to about √K times wider than what the rotated
    /// inputs reach, so static activation ranges taken from it are conservative (coarse); dynamic per-token
    /// activation quantization — QuaRot's — needs no range. Per-step ranges are bounded the same way from the
    /// per-step channel extremes when they were kept, else left out. <see cref="ExtremesAreBounds"/> is true on the
    /// result. A new object the caller owns.
    /// </summary>
    public LayerStatistics Rotated(IInputRotation rotation)
    {
        ArgumentNullException.ThrowIfNull(rotation);
        if (rotation.Size != InFeatures)
            throw new CalibrationException($"layer '{LayerName}': rotation '{rotation.Description}' rotates {rotation.Size} channels, expected {InFeatures}.");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var result = new LayerStatistics(LayerName, InFeatures, CollectsSecondMoment, CollectsStepChannels)
        {
            Calls = Calls, Rows = Rows, SecondMomentWeight = SecondMomentWeight, ExtremesAreBounds = true,
        };
        if (_channelMin is not null)
        {
            // Rows 0: overall; then one per step with kept channel extremes.
            var steps = _stepChannels.Keys.Order().ToList();
            var lo = torch.stack([_channelMin, .. steps.Select(k => _stepChannels[k].Min.to(_channelMin.device))]);
            var hi = torch.stack([_channelMax!, .. steps.Select(k => _stepChannels[k].Max.to(_channelMin.device))]);
            var (boundLo, boundHi) = IntervalBound(rotation, lo, hi);
            result._channelMin = boundLo[0].clone().DetachFromDisposeScope();
            result._channelMax = boundHi[0].clone().DetachFromDisposeScope();
            result._channelAbsMax = torch.maximum(boundLo[0].abs(), boundHi[0].abs()).DetachFromDisposeScope();
            result.InputMin = boundLo[0].min().item<float>();
            result.InputMax = boundHi[0].max().item<float>();
            for (int i = 0; i < steps.Count; i++)
            {
                var (smin, smax) = (boundLo[i + 1].clone().DetachFromDisposeScope(), boundHi[i + 1].clone().DetachFromDisposeScope());
                result._stepChannels[steps[i]] = (smin, smax);
                result._steps[steps[i]] = new StepRange(smin.min().item<float>(), smax.max().item<float>(), _steps[steps[i]].Rows);
            }
        }
        if (_secondMoment is not null)
        {
            // Rotate(M) = M·Rᵀ; with S symmetric, Rotate(Rotate(S)ᵀ) = R·S·Rᵀ.
            var once = rotation.Rotate(_secondMoment);
            var twice = rotation.Rotate(once.t().contiguous());
            result._secondMoment = ((twice + twice.t()) * 0.5).DetachFromDisposeScope();
        }
        return result;
    }

    // Interval arithmetic through R, for rows of per-channel bounds lo, hi [n, K]: the smallest and largest
    // Σ_j R_ij x_j with lo_j ≤ x_j ≤ hi_j. Rᵀ is made in chunks of rows (Rotate of identity rows), O(chunk·K) memory.
    private (Tensor Lo, Tensor Hi) IntervalBound(IInputRotation rotation, Tensor lo, Tensor hi)
    {
        const long chunk = 256;
        var lo64 = lo.to(ScalarType.Float64);
        var hi64 = hi.to(ScalarType.Float64);
        var outLo = torch.zeros_like(lo64);
        var outHi = torch.zeros_like(hi64);
        for (long start = 0; start < InFeatures; start += chunk)
        {
            using var inner = torch.NewDisposeScope();
            long n = Math.Min(chunk, InFeatures - start);
            var identityRows = torch.cat([
                torch.zeros(n, start, dtype: ScalarType.Float64, device: lo.device),
                torch.eye(n, dtype: ScalarType.Float64, device: lo.device),
                torch.zeros(n, InFeatures - start - n, dtype: ScalarType.Float64, device: lo.device)], 1);
            var rt = rotation.Rotate(identityRows); // [n, K]: R_{i, start+j} at [j, i]
            var positive = rt.clamp_min(0);
            var negative = rt.clamp_max(0);
            var l = lo64.narrow(1, start, n);
            var h = hi64.narrow(1, start, n);
            outHi.add_(h.mm(positive) + l.mm(negative));
            outLo.add_(l.mm(positive) + h.mm(negative));
        }
        return (outLo.to(ScalarType.Float32), outHi.to(ScalarType.Float32));
    }

    /// <summary>Per-step per-channel extremes <c>(min, max)</c> by step index (empty unless <see cref="CollectsStepChannels"/>).</summary>
    internal IReadOnlyDictionary<int, (Tensor Min, Tensor Max)> StepChannels => _stepChannels;

    /// <summary>
    /// max |x_j| per sampling step and input channel (the activation salience of each step, as PTQ4DiT's salience
    /// calibration uses it): the step indices in ascending order and a new float32 tensor <c>[steps, in]</c> whose row
    /// <c>i</c> belongs to <c>Steps[i]</c>, which the caller disposes. Null when no per-step channel extremes were kept
    /// (see <see cref="CalibrationRequirements.PerStepChannelExtremes"/>) or no step was seen.
    /// </summary>
    public (IReadOnlyList<int> Steps, Tensor AbsMax)? StepChannelAbsMax()
    {
        if (_stepChannels.Count == 0) return null;
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var steps = _stepChannels.Keys.Order().ToList();
        var rows = steps.Select(k => torch.maximum(_stepChannels[k].Min.abs(), _stepChannels[k].Max.abs())).ToList();
        return (steps, torch.stack(rows).MoveToOuterDisposeScope());
    }

    /// <summary>Rebuilds statistics from saved parts (see <see cref="CalibrationFile"/>); takes ownership of the tensors.</summary>
    internal static LayerStatistics Restore(string layerName, long inFeatures, bool collectSecondMoment, bool collectStepChannels,
        int calls, long rows, double inputMin, double inputMax, double secondMomentWeight,
        Tensor? channelAbsMax, Tensor? channelMin, Tensor? channelMax, Tensor? secondMoment,
        IEnumerable<KeyValuePair<int, StepRange>> steps, IEnumerable<KeyValuePair<int, (Tensor Min, Tensor Max)>> stepChannels)
    {
        var s = new LayerStatistics(layerName, inFeatures, collectSecondMoment, collectStepChannels)
        {
            Calls = calls, Rows = rows, InputMin = inputMin, InputMax = inputMax, SecondMomentWeight = secondMomentWeight,
            _channelAbsMax = channelAbsMax, _channelMin = channelMin, _channelMax = channelMax, _secondMoment = secondMoment,
        };
        foreach (var (k, v) in steps) s._steps[k] = v;
        foreach (var (k, v) in stepChannels) s._stepChannels[k] = v;
        return s;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (min, max) in _stepChannels.Values)
        {
            min.Dispose();
            max.Dispose();
        }
        _stepChannels.Clear();
        _channelMin?.Dispose();
        _channelMax?.Dispose();
        _channelMin = null;
        _channelMax = null;
        _channelAbsMax?.Dispose();
        _secondMoment?.Dispose();
        _channelAbsMax = null;
        _secondMoment = null;
    }
}
