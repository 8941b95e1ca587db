using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Scales and zero points of one quantized tensor, shaped <c>[rows, groups, 1]</c> to broadcast over
/// the grouped view <c>[rows, groups, groupSize]</c> of the tensor (see <see cref="FakeQuantizer.GroupView"/>).
/// Float32; <see cref="Zero"/> is null for symmetric grids. Owns its tensors.
/// </summary>
public sealed class QuantParams : IDisposable
{
    /// <summary>Takes ownership of the given tensors (they are detached from any dispose scope).</summary>
    public QuantParams(Tensor scale, Tensor? zero)
    {
        Scale = scale.DetachFromDisposeScope();
        Zero = zero?.DetachFromDisposeScope();
    }

    /// <summary>Step between two integer levels, <c>[rows, groups, 1]</c>, always positive.</summary>
    public Tensor Scale { get; }

    /// <summary>Integer that represents 0.0 (asymmetric grids), <c>[rows, groups, 1]</c>; null when symmetric.</summary>
    public Tensor? Zero { get; }

    /// <summary>
    /// Computes the scale (and zero point) that map [<paramref name="min"/>, <paramref name="max"/>]
    /// (tensors of one shape, one entry per group) onto the integer grid of <paramref name="spec"/>.
    /// The clip ratio is applied here.
    /// </summary>
    public static QuantParams FromRange(Tensor min, Tensor max, QuantSpec spec)
    {
        using var scope = torch.NewDisposeScope();
        var lo = min.to(ScalarType.Float32).clamp_max(0) * spec.ClipRatio;
        var hi = max.to(ScalarType.Float32).clamp_min(0) * spec.ClipRatio;
        Tensor scale, zero;
        if (spec.Symmetric)
        {
            var amax = torch.maximum(lo.abs(), hi);
            scale = (amax / spec.QMax).clamp_min(MinScale);
            return new QuantParams(scale.MoveToOuterDisposeScope(), null);
        }
        scale = ((hi - lo) / spec.QMax).clamp_min(MinScale);
        zero = (-lo / scale).round_().clamp_(0, spec.QMax);
        return new QuantParams(scale.MoveToOuterDisposeScope(), zero.MoveToOuterDisposeScope());
    }

    /// <summary>The smallest scale used, so that an all-zero group does not divide by zero.</summary>
    public const float MinScale = 1e-12f;

    /// <summary>Moves both tensors to <paramref name="device"/> (a copy; this instance is unchanged).</summary>
    public QuantParams To(Device device) => new(Scale.to(device), Zero?.to(device));

    /// <inheritdoc />
    public void Dispose()
    {
        Scale.Dispose();
        Zero?.Dispose();
    }
}
