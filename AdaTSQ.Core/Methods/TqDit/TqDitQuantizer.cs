using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>
/// TQ-DiT's weight granularity with its initial steps: one step per tensor, a fused qkv (a layer named <c>….qkv</c> whose
/// rows split in three) one per part, each <c>Δ0 = max|W_part| / (2^(k−1) − 0.5)</c>. The result is stored as a per-channel
/// <see cref="QuantSpec"/> whose rows share their part's scale, so it runs wherever per-channel weights run (the integer
/// kernels included). <c>UseTqDit</c> plugs it in; its search (<see cref="TqDitSearch"/>) then replaces these steps with the
/// searched ones. Needs no calibration data.
/// </summary>
public sealed class TqDitQuantizer : IQuantizer
{
    /// <inheritdoc />
    public string Name => "TQ-DiT";

    /// <inheritdoc />
    public CalibrationRequirements Requirements => CalibrationRequirements.None;

    /// <summary>Number of parts with their own step: 3 for a fused qkv projection (name ending in <c>qkv</c>, rows divisible by 3), else 1.</summary>
    public static int PartsOf(string layerName, long outFeatures) =>
        layerName.EndsWith("qkv", StringComparison.Ordinal) && outFeatures % 3 == 0 ? 3 : 1;

    /// <summary>The weight quantized with one step per part (<paramref name="steps"/>, in row order) under the per-channel <paramref name="spec"/>.</summary>
    public static QuantizedTensor WithSteps(Tensor weight, QuantSpec spec, IReadOnlyList<double> steps)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(steps);
        if (spec.Granularity != QuantGranularity.PerChannel || !spec.Symmetric)
            throw new QuantSpecException([$"TQ-DiT stores its per-tensor steps as a symmetric per-channel spec, got {spec}."]);
        long rows = weight.shape[0];
        if (steps.Count == 0 || rows % steps.Count != 0) throw new ArgumentException($"{steps.Count} steps do not split {rows} rows.", nameof(steps));
        using var scope = torch.NewDisposeScope();
        long per = rows / steps.Count;
        var scale = torch.tensor(Enumerable.Range(0, (int)rows).Select(r => (float)steps[(int)(r / per)]).ToArray()).reshape(rows, 1, 1);
        var p = new QuantParams(scale.MoveToOuterDisposeScope(), null);
        try { return QuantizedTensor.FromParams(weight.detach(), spec, p); }
        catch { p.Dispose(); throw; }
    }

    /// <inheritdoc />
    public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate(QuantTarget.Weight, weight.shape[^1], $"layer '{layerName}'");
        cancellationToken.ThrowIfCancellationRequested();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int parts = PartsOf(layerName, weight.shape[0]);
        long per = weight.shape[0] / parts;
        var steps = Enumerable.Range(0, parts).Select(p => TqDitGrid.InitialStep(weight.narrow(0, p * per, per).abs().max().item<float>(), spec.Bits)).ToList();
        return WithSteps(weight, spec, steps);
    }
}
