using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// The relation between nested weight codes: the <c>b</c>-bit codes of a <c>w</c>-bit symmetric version are
/// <c>clamp(round(c / 2^(w−b)), QMin, QMax)</c> (round half to even) of its codes <c>c</c>. <see cref="QuantLinear"/> stores a
/// version related so to a wider one as nested; AdaTSQ's nested weights (<c>AdaTSQ.Methods.AdaTSQ.Nested.NestedCodes</c>)
/// make such versions.
/// </summary>
public static class NestedCodeSlice
{
    /// <summary>The codes of <paramref name="narrow"/>'s width read from <paramref name="wide"/>'s codes: float64 <c>[rows, cols]</c> (caller disposes).</summary>
    public static Tensor Codes(QuantizedTensor wide, QuantSpec narrow)
    {
        ArgumentNullException.ThrowIfNull(wide);
        ArgumentNullException.ThrowIfNull(narrow);
        using var scope = torch.NewDisposeScope();
        return (wide.UnpackedCodes().to(ScalarType.Float64) / Math.Pow(2, wide.Spec.Bits - narrow.Bits)).round().clamp(narrow.QMin, narrow.QMax)
            .MoveToOuterDisposeScope();
    }

    /// <summary>True when every code of <paramref name="narrow"/> is the rounded top of the matching code of <paramref name="wide"/> (both symmetric, same shape, narrower).</summary>
    public static bool IsNestedIn(QuantizedTensor narrow, QuantizedTensor wide)
    {
        ArgumentNullException.ThrowIfNull(narrow);
        ArgumentNullException.ThrowIfNull(wide);
        if (!narrow.Shape.SequenceEqual(wide.Shape) || narrow.Spec.Bits >= wide.Spec.Bits || !narrow.Spec.Symmetric || !wide.Spec.Symmetric) return false;
        using var scope = torch.NewDisposeScope();
        return Codes(wide, narrow.Spec).equal(narrow.UnpackedCodes().to(ScalarType.Float64)).all().item<bool>();
    }

    /// <summary>
    /// The symmetric quantized tensor of <paramref name="spec"/> with integer <paramref name="codes"/> (<c>[rows, cols]</c>,
    /// any float dtype, already on the spec's grid) and <paramref name="scale"/> (<c>[rows, groups, 1]</c>, copied); the
    /// caller owns the result. The values <c>c·s</c> requantized with <c>s</c> give back <c>c</c> exactly (|c| ≤ 127), so the
    /// library's own constructor builds it.
    /// </summary>
    public static QuantizedTensor FromCodes(Tensor codes, QuantSpec spec, Tensor scale)
    {
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(scale);
        using var scope = torch.NewDisposeScope();
        var scale32 = scale.to(ScalarType.Float32).clone();
        var values = (FakeQuantizer.GroupView(codes.to(ScalarType.Float64), spec) * scale32.to(ScalarType.Float64)).to(ScalarType.Float32).reshape(codes.shape);
        var parameters = new QuantParams(scale32, null);
        try { return QuantizedTensor.FromParams(values, spec, parameters); }
        catch { parameters.Dispose(); throw; }
    }
}
