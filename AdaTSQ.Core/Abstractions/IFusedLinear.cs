using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// A linear module that can run the element-wise work around it (a <see cref="FusedLinearOps"/>
/// prologue on its input, an epilogue on its output) fused with itself, e.g. as one integer kernel call.
/// </summary>
/// <remarks>
/// Model code does not call it directly: it states each fusion once through
/// <c>AdaTSQ.Models.FusedLinear.Forward</c>, which calls <see cref="ForwardFused"/> on modules that implement
/// this interface and runs the composed TorchSharp ops around any other module. This keeps the model
/// independent of the layers that implement it (the quantized <c>QuantLinear</c> does).
/// </remarks>
public interface IFusedLinear
{
    /// <summary>
    /// <c>ops.ComposeEpilogue(this(ops.ComposePrologue(input)))</c>, computed however the module can (fused or
    /// composed); agrees with that composition within float rounding. Returns a new tensor; neither
    /// <paramref name="input"/> nor the tensors of <paramref name="ops"/> are taken over.
    /// </summary>
    /// <param name="input">The input before the prologue.</param>
    /// <param name="ops">The work before and after the module (<see cref="FusedLinearOps.None"/> for none).</param>
    Tensor ForwardFused(Tensor input, FusedLinearOps ops);
}
