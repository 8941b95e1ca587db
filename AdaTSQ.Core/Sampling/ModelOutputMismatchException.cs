using AdaTSQ.Abstractions;

namespace AdaTSQ.Sampling;

/// <summary>
/// The model's prediction does not fit the diffusion's <see cref="Sampling.VarianceType"/>: a
/// learned-range variance needs 2·C output channels (ε and the variance values), a fixed variance
/// exactly C. Typically a learn-sigma DiT sampled with a fixed-variance diffusion: create the diffusion
/// with <see cref="GaussianDiffusion.For"/> (as the official <c>create_diffusion</c> does).
/// </summary>
public sealed class ModelOutputMismatchException : AdaTSQException
{
    /// <summary>Creates the exception; the message names the channel counts and the variance type.</summary>
    public ModelOutputMismatchException(VarianceType varianceType, long sampleChannels, long outputChannels)
        : base(Describe(varianceType, sampleChannels, outputChannels))
    {
        VarianceType = varianceType;
        SampleChannels = sampleChannels;
        OutputChannels = outputChannels;
    }

    /// <summary>The diffusion's variance type.</summary>
    public VarianceType VarianceType { get; }

    /// <summary>Channels C of the sample x_t.</summary>
    public long SampleChannels { get; }

    /// <summary>Channels of the model's prediction.</summary>
    public long OutputChannels { get; }

    private static string Describe(VarianceType type, long c, long output)
    {
        long expected = type == VarianceType.LearnedRange ? 2 * c : c;
        string head = $"the model predicts {output} channels for a {c}-channel sample, but the diffusion's variance type {type} needs {expected}";
        if (type != VarianceType.LearnedRange && output == 2 * c)
            return head + $": the model learns its variance (learn sigma: ε and {c} variance channels). Create the diffusion with GaussianDiffusion.For(config) or VarianceType.LearnedRange, as the official create_diffusion does for learn_sigma=True.";
        if (type == VarianceType.LearnedRange && output == c)
            return head + ": the model predicts ε only (no learned sigma). Use a fixed variance (GaussianDiffusion.For(config), or VarianceType.FixedLarge as the official create_diffusion does for learn_sigma=False).";
        return head + ".";
    }
}
