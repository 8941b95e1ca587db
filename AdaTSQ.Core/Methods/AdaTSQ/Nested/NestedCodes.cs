using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Nested;

/// <summary>
/// Nested weight codes (issue 16, item 2): a narrower weight version read from a wider one, so that every width of a
/// timestep-dynamic weight policy comes from one stored code set. From the symmetric <c>w</c>-bit codes <c>c</c> with
/// scales <c>s</c>, the <c>b</c>-bit codes are <c>c_b = clamp(round(c / 2^(w−b)), −(2^(b−1)−1), 2^(b−1)−1)</c> (the library's symmetric grid) (round half to
/// even) — the top <c>b</c> bits of <c>c</c>, rounded — with the scales <c>s·2^(w−b)</c>. With a float weight given, the
/// scales are then refitted per group (the rounding correction): <c>s_b = Σ W·c_b / Σ c_b²</c>, the least-squares scale for
/// the sliced codes, which never gives a larger weight error than <c>s·2^(w−b)</c> in any group. The codes stay a function
/// of the wide codes alone; only the scales (one float per group) are stored per width.
/// </summary>
public static class NestedCodes
{
    /// <summary>The <paramref name="bits"/>-bit version of <paramref name="wide"/>; the caller owns the result.</summary>
    /// <param name="wide">Symmetric codes of a wider width (e.g. 8-bit).</param>
    /// <param name="bits">The narrower width, ≥ <see cref="QuantSpec.MinBits"/> and below the wide spec's bits.</param>
    /// <param name="weight">The float weight the codes stand for (same shape), to refit the scales; null keeps <c>s·2^(w−b)</c>.</param>
    /// <exception cref="ArgumentException">Asymmetric codes, a width that is not narrower, or a weight of another shape.</exception>
    public static QuantizedTensor Slice(QuantizedTensor wide, int bits, Tensor? weight = null)
    {
        ArgumentNullException.ThrowIfNull(wide);
        var wideSpec = wide.Spec;
        if (!wideSpec.Symmetric)
            throw new ArgumentException($"nested codes need symmetric codes; the wide version is {wideSpec}.", nameof(wide));
        if (bits < QuantSpec.MinBits || bits >= wideSpec.Bits)
            throw new ArgumentException($"a nested width must be in [{QuantSpec.MinBits}, {wideSpec.Bits - 1}] (narrower than the wide version's {wideSpec.Bits} bits); got {bits}.", nameof(bits));
        if (weight is not null && !weight.shape.SequenceEqual(wide.Shape))
            throw new ArgumentException($"the weight has shape [{string.Join(", ", weight.shape)}], the codes [{string.Join(", ", wide.Shape)}].", nameof(weight));
        var spec = wideSpec with { Bits = bits };
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double factor = Math.Pow(2, wideSpec.Bits - bits);
        var codes = NestedCodeSlice.Codes(wide, spec);                                                             // [rows, cols]
        var scale = wide.Parameters.Scale.to(ScalarType.Float64) * factor;                                               // [rows, groups, 1]
        if (weight is not null)
        {
            var narrow = FakeQuantizer.GroupView(codes, spec);                                                     // [rows, groups, g]
            var w = FakeQuantizer.GroupView(weight.to(ScalarType.Float64, wide.Codes.device), spec);
            var energy = narrow.square().sum(-1, keepdim: true);
            var fitted = (w * narrow).sum(-1, keepdim: true) / energy.clamp_min(1);
            // Keep the sliced scale where the group's codes are all zero or the fit is not a usable positive scale.
            scale = torch.where(energy.gt(0).logical_and(fitted.gt(QuantParams.MinScale)), fitted, scale);
        }
        return NestedCodeSlice.FromCodes(codes, spec, scale);
    }

    /// <summary>True when every code of <paramref name="narrow"/> is the rounded top of the matching code of <paramref name="wide"/> (<see cref="NestedCodeSlice.IsNestedIn"/>).</summary>
    public static bool IsNestedIn(QuantizedTensor narrow, QuantizedTensor wide) => NestedCodeSlice.IsNestedIn(narrow, wide);
}
