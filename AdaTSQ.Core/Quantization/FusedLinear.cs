using AdaTSQ.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Calls a linear layer with the element-wise work around it described by a
/// <see cref="FusedLinearOps"/>, so that model code states the fusion once and gets the fast path
/// wherever it exists: a <see cref="QuantLinear"/> on the integer kernels runs it as one fused call
/// (<see cref="QuantLinear.ForwardFused"/>); any other module runs the same TorchSharp ops as
/// before (<see cref="FusedLinearOps.ComposePrologue"/>, the module, <see cref="FusedLinearOps.ComposeEpilogue"/>),
/// bit for bit what unfused model code computes.
/// </summary>
public static class FusedLinear
{
    /// <summary><c>ops.ComposeEpilogue(linear(ops.ComposePrologue(input)))</c>, fused where the layer supports it.</summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor> linear, Tensor input, FusedLinearOps ops)
    {
        ArgumentNullException.ThrowIfNull(linear);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(ops);
        if (linear is QuantLinear quant) return quant.ForwardFused(input, ops);
        using var x = ops.ComposePrologue(input);
        using var y = linear.call(x);
        return ops.ComposeEpilogue(y);
    }
}
