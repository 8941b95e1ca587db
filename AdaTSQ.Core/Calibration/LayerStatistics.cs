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
    private Tensor? _channelAbsMax;
    private Tensor? _secondMoment;

    /// <summary>Creates empty statistics for a layer with <paramref name="inFeatures"/> inputs.</summary>
    public LayerStatistics(string layerName, long inFeatures, bool collectSecondMoment)
    {
        LayerName = layerName;
        InFeatures = inFeatures;
        CollectsSecondMoment = collectSecondMoment;
    }

    /// <summary>The layer's dotted name.</summary>
    public string LayerName { get; }

    /// <summary>Input features.</summary>
    public long InFeatures { get; }

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

    /// <summary>Σ α·x·xᵀ over all rows <c>[in, in]</c> (float64), α = the calibrator's step weight; null when not collected.</summary>
    public Tensor? SecondMoment => _secondMoment;

    /// <summary>Σ α over all rows: the normaliser of <see cref="SecondMoment"/>.</summary>
    public double SecondMomentWeight { get; private set; }

    /// <summary>Input ranges per sampling step index (steps seen only; empty when no step was set).</summary>
    public IReadOnlyDictionary<int, StepRange> Steps => _steps;

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
        var absMax = x.abs().amax([0]);
        if (_channelAbsMax is null) _channelAbsMax = absMax.DetachFromDisposeScope();
        else _channelAbsMax.copy_(torch.maximum(_channelAbsMax, absMax));
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
        }
    }

    /// <summary>The normalised second moment Σ α x xᵀ / Σ α (a new tensor), or null when not collected.</summary>
    public Tensor? MeanSecondMoment() =>
        _secondMoment is null || SecondMomentWeight <= 0 ? null : _secondMoment / SecondMomentWeight;

    /// <inheritdoc />
    public void Dispose()
    {
        _channelAbsMax?.Dispose();
        _secondMoment?.Dispose();
        _channelAbsMax = null;
        _secondMoment = null;
    }
}
