using AdaTSQ.Methods.Gptq;

namespace AdaTSQ.Pipeline;

/// <summary>GPTQ's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class GptqBuilderExtensions
{
    /// <summary>
    /// Hessian-based weight optimization: GPTQ with <paramref name="options"/> quantizes every weight
    /// against its (temporally weighted, when Fisher calibration is used) input Hessian.
    /// Needs calibration data. Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseHessianOptimization(this QuantizationBuilder builder, GptqOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var o = options ?? new GptqOptions();
        var problems = o.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        return builder.Quantizer(logger => new GptqQuantizer(o, logger));
    }
}
