using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.AdaTSQ.Search;

namespace AdaTSQ.Pipeline;

/// <summary>
/// AdaTSQ's steps of the builder (arXiv 2602.09883): Fisher-guided temporal calibration and the Pareto-aware
/// bit-width search over timesteps. Declared in the builder's namespace so that they show up beside it.
/// </summary>
public static class AdaTSQBuilderExtensions
{
    /// <summary>
    /// AdaTSQ's Fisher-guided temporal calibration: the temporal Fisher of the (full-precision) layers
    /// is estimated by <paramref name="estimator"/> when calibration starts, and each step's calibration
    /// data are weighted (and/or drawn) by it (see <see cref="FisherCalibrator"/>). Needs a calibration
    /// source that runs the sampler's steps, e.g. <see cref="Calibration.TrajectoryCalibrationSource"/>. Chainable.
    /// </summary>
    public static QuantizationBuilder UseFisherCalibration(this QuantizationBuilder builder, TemporalFisherEstimator estimator, FisherCalibrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(estimator);
        return builder.Calibrator(logger => new FisherCalibrator(estimator, options, logger));
    }

    /// <summary>Fisher-guided temporal calibration with Fisher values estimated beforehand (e.g. <see cref="TemporalFisher.Load"/>). Chainable.</summary>
    public static QuantizationBuilder UseFisherCalibration(this QuantizationBuilder builder, TemporalFisher fisher, FisherCalibrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(fisher);
        return builder.Calibrator(logger => new FisherCalibrator(fisher, options, logger));
    }

    /// <summary>
    /// AdaTSQ's Pareto-aware timestep-dynamic bit-width allocation: every selected layer is quantized once
    /// per bit-width of <paramref name="bits"/> (by the quantizer, e.g. GPTQ with Fisher-weighted calibration),
    /// then a beam search of width <paramref name="beamWidth"/> over the sampling steps of
    /// <paramref name="trajectories"/> picks each layer's bits per step under <paramref name="budget"/>
    /// (see <see cref="BitWidthSearch"/>). The result's policy is the best one found, its <c>Search</c>
    /// the whole frontier; layers keep only the versions it uses. Weights(...)/Activations(...), when given,
    /// are the spec templates whose bits the search varies. Chainable.
    /// </summary>
    public static QuantizationBuilder SearchBitWidths(this QuantizationBuilder builder, IReadOnlyList<int> bits, BitBudget budget, int beamWidth, SearchTrajectories trajectories) =>
        builder.SearchBitWidths(trajectories, new BitWidthSearchOptions { WeightBits = bits ?? throw new ArgumentNullException(nameof(bits)), Budget = budget, BeamWidth = beamWidth });

    /// <summary>
    /// The bit-width search with every option (see <see cref="SearchBitWidths(QuantizationBuilder, IReadOnlyList{int}, BitBudget, int, SearchTrajectories)"/>);
    /// with <paramref name="heldOut"/> trajectories (other noise, same sampler) the final policy is selected by its error on
    /// them, not on the search trajectories. Chainable.
    /// </summary>
    public static QuantizationBuilder SearchBitWidths(this QuantizationBuilder builder, SearchTrajectories trajectories, BitWidthSearchOptions options, SearchTrajectories? heldOut = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.SearchPolicy(new BitWidthPolicySearch(trajectories ?? throw new ArgumentNullException(nameof(trajectories)),
            options ?? throw new ArgumentNullException(nameof(options)), heldOut));
    }
}
