using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// The report of ViDiT-Q's metric-decoupled mixed precision: each layer's sensitivity per metric, the layers raised to
/// the high config (with the metric that raised each) and the average weight bits reached.
/// </summary>
/// <param name="Layers">Layer names.</param>
/// <param name="Metrics">Metric names.</param>
/// <param name="Sensitivity"><c>Sensitivity[m][l]</c>: metric m's distance from the FP samples with only layer l at the low config.</param>
/// <param name="Promoted">The layers at the high config, in the order promoted, with the metric whose turn promoted each.</param>
/// <param name="Low">The low config.</param>
/// <param name="High">The high config.</param>
/// <param name="AverageWeightBits">Average weight bits per parameter of the allocation.</param>
/// <param name="Budget">The budget, in average weight bits.</param>
public sealed record MixedPrecisionResult(IReadOnlyList<string> Layers, IReadOnlyList<string> Metrics, IReadOnlyList<IReadOnlyList<double>> Sensitivity,
    IReadOnlyList<(string Layer, string Metric)> Promoted, LayerQuantConfig Low, LayerQuantConfig High, double AverageWeightBits, double Budget);

/// <summary>Reads ViDiT-Q's mixed-precision report back from a quantization result.</summary>
public static class MixedPrecisionResultExtensions
{
    extension(QuantizationResult result)
    {
        /// <summary>The metric-decoupled mixed precision's report, when the run used it (<c>UseViDiTQ</c> with mixed precision); else null.</summary>
        public MixedPrecisionResult? ViDiTQMixedPrecision => result.SearchOutcome?.Report as MixedPrecisionResult;
    }
}
