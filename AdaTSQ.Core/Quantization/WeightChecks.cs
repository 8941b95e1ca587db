using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>Checks on float weights before they are quantized.</summary>
public static class WeightChecks
{
    /// <summary>
    /// The problem with <paramref name="weight"/> of layer <paramref name="layerName"/>, or null when
    /// it is a finite floating-point matrix.
    /// </summary>
    public static string? FindProblem(string layerName, Tensor weight)
    {
        if (weight.Dimensions != 2) return $"layer '{layerName}': weight has {weight.Dimensions} dimensions [{string.Join(", ", weight.shape)}], expected a matrix [out, in].";
        if (!weight.is_floating_point()) return $"layer '{layerName}': weight has dtype {weight.dtype}, expected a floating-point type.";
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var bad = weight.isfinite().logical_not();
        long count = bad.sum().item<long>();
        if (count == 0) return null;
        long nan = weight.isnan().sum().item<long>();
        var first = bad.nonzero()[0];
        return $"layer '{layerName}': weight [{weight.shape[0]}, {weight.shape[1]}] has {count} non-finite value(s) ({nan} NaN, {count - nan} ±Inf), first at [{first[0].item<long>()}, {first[1].item<long>()}].";
    }

    /// <summary>Throws a <see cref="LayerQuantizationException"/> when <see cref="FindProblem"/> finds one.</summary>
    public static void EnsureFinite(string layerName, Tensor weight)
    {
        var problem = FindProblem(layerName, weight);
        if (problem is not null) throw new LayerQuantizationException(layerName, problem[(problem.IndexOf(": ", StringComparison.Ordinal) + 2)..]);
    }
}
