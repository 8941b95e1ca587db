using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Round-to-nearest fake quantization: quantize to the integer grid of a <see cref="QuantSpec"/> and
/// dequantize back, in the tensor's dtype and on its device. This is what quantized layers compute
/// with when no integer kernel is used; the error it adds is what the methods minimise.
/// </summary>
public static class FakeQuantizer
{
    /// <summary>
    /// The grouped view <c>[rows, groups, groupSize]</c> of <paramref name="x"/> (last dimension =
    /// reduction dimension) that <paramref name="spec"/>'s scales broadcast over.
    /// </summary>
    public static Tensor GroupView(Tensor x, QuantSpec spec)
    {
        if (x.Dimensions == 0) return x.reshape(1, 1, 1);
        long cols = x.shape[^1];
        return spec.Granularity switch
        {
            QuantGranularity.PerTensor => x.reshape(1, 1, -1),
            QuantGranularity.PerChannel or QuantGranularity.PerToken => x.reshape(-1, 1, cols),
            QuantGranularity.PerGroup => x.reshape(-1, cols / spec.GroupSize, spec.GroupSize),
            _ => throw new QuantSpecException([$"granularity {spec.Granularity} is not supported."]),
        };
    }

    /// <summary>Scales (and zero points) from the min/max of each group of <paramref name="x"/>.</summary>
    public static QuantParams ComputeParams(Tensor x, QuantSpec spec)
    {
        EnsureUsable(x, spec);
        using var scope = torch.NewDisposeScope();
        var g = GroupView(x.detach(), spec).to(ScalarType.Float32);
        var min = g.amin([2], keepdim: true);
        var max = g.amax([2], keepdim: true);
        return QuantParams.FromRange(min, max, spec);
    }

    /// <summary>Integer codes of <paramref name="x"/> under <paramref name="p"/>, as float32 in the grouped view.</summary>
    public static Tensor Quantize(Tensor x, QuantSpec spec, QuantParams p)
    {
        using var scope = torch.NewDisposeScope();
        var g = GroupView(x, spec).to(ScalarType.Float32);
        var q = (g / p.Scale).round_();
        if (p.Zero is not null) q.add_(p.Zero);
        return q.clamp_(spec.QMin, spec.QMax).MoveToOuterDisposeScope();
    }

    /// <summary>Dequantizes grouped float codes back to a tensor of <paramref name="shape"/> and <paramref name="dtype"/>.</summary>
    public static Tensor Dequantize(Tensor codes, QuantParams p, long[] shape, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var q = codes.to(ScalarType.Float32);
        if (p.Zero is not null) q = q - p.Zero;
        return (q * p.Scale).reshape(shape).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Quantize→dequantize with ranges computed from <paramref name="x"/> itself (weights, dynamic activations).</summary>
    public static Tensor QuantizeDequantize(Tensor x, QuantSpec spec)
    {
        if (!spec.IsEnabled) return x.alias();
        using var p = ComputeParams(x, spec);
        return QuantizeDequantize(x, spec, p);
    }

    /// <summary>Quantize→dequantize with given scales (static activation ranges, or precomputed weight scales).</summary>
    public static Tensor QuantizeDequantize(Tensor x, QuantSpec spec, QuantParams p)
    {
        if (!spec.IsEnabled) return x.alias();
        EnsureUsable(x, spec);
        using var scope = torch.NewDisposeScope();
        var codes = Quantize(x, spec, p);
        return Dequantize(codes, p, x.shape, x.dtype).MoveToOuterDisposeScope();
    }

    private static void EnsureUsable(Tensor x, QuantSpec spec)
    {
        if (!x.is_floating_point())
            throw new ArgumentException($"Fake quantization needs a floating-point tensor, got {x.dtype}.", nameof(x));
        spec.Validate(target: null, x.Dimensions == 0 ? 1 : x.shape[^1]);
    }
}
