using AdaTSQ.Methods.AdaTSQ.Nested;

namespace AdaTSQ.Pipeline;

/// <summary>AdaTSQ's nested weights on the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class NestedBuilderExtensions
{
    /// <summary>
    /// Nested weights (issue 16, item 2): every weight width below <paramref name="parentBits"/> is read from the
    /// <paramref name="parentBits"/>-bit version the plan's quantizer makes (<see cref="NestedQuantizer"/>,
    /// <see cref="NestedCodes"/>), so that a timestep-dynamic weight policy's versions share one code set. Weight specs
    /// must be symmetric. The layers still store each width's codes (memory is not saved yet: planned). Chainable.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="parentBits">The width the narrower ones are sliced from (default 8), in [3, 8].</param>
    /// <param name="refitScales">Least-squares scales for each narrower width (default true).</param>
    public static QuantizationBuilder UseNestedWeights(this QuantizationBuilder builder, int parentBits = 8, bool refitScales = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        _ = new NestedQuantizer(new Methods.Rtn.RtnQuantizer(), parentBits, refitScales);   // validates the arguments now
        return builder.DecorateQuantizer("nested weights", inner => new NestedQuantizer(inner, parentBits, refitScales));
    }
}
