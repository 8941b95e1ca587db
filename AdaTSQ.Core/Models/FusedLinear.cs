using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models;

/// <summary>
/// Calls a linear layer with the element-wise work around it described by a
/// <see cref="FusedLinearOps"/>, so that model code states the fusion once and gets the fast path
/// wherever it exists: a module implementing <see cref="IFusedLinear"/> (such as the quantized
/// <c>QuantLinear</c>, which on the integer kernels runs it as one fused call) gets
/// <see cref="IFusedLinear.ForwardFused"/>; any other module runs the same TorchSharp ops as
/// before (<see cref="FusedLinearOps.ComposePrologue"/>, the module, <see cref="FusedLinearOps.ComposeEpilogue"/>),
/// bit for bit what unfused model code computes.
/// </summary>
/// <remarks>
/// It is the models' side of the fusion: it depends on the abstraction <see cref="IFusedLinear"/> only, not on the
/// quantization layer (formerly <c>AdaTSQ.Quantization.FusedLinear</c>, which tested for <c>QuantLinear</c>), and
/// <c>Abstractions/</c> keeps only the interface and the data it exchanges.
/// </remarks>
public static class FusedLinear
{
    /// <summary><c>ops.ComposeEpilogue(linear(ops.ComposePrologue(input)))</c>, fused where the layer supports it.</summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor> linear, Tensor input, FusedLinearOps ops)
    {
        ArgumentNullException.ThrowIfNull(linear);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(ops);
        if (linear is IFusedLinear fused) return fused.ForwardFused(input, ops);
        using var x = ops.ComposePrologue(input);
        using var y = linear.call(x);
        return ops.ComposeEpilogue(y);
    }
}
