namespace AdaTSQ.Evaluation.Comparison;

/// <summary>What one comparison cell cost to compute, and the size of the model it evaluated.</summary>
/// <param name="CalibrationSeconds">Wall time of configuring, building and applying the quantization (calibration and quantization; 0 for the reference).</param>
/// <param name="SamplingSeconds">Wall time inside the chunk sampler only, summed over chunks.</param>
/// <param name="PeakResidentBytes">Peak resident memory of the process (see <see cref="PeakIsPerCell"/>).</param>
/// <param name="PeakIsPerCell">
/// True when the peak was reset before the cell (Linux <c>/proc/self/clear_refs</c>), so it is this cell's own
/// peak; false when it is the process's peak so far.
/// </param>
/// <param name="ModelWeightBytes">The model's weights as evaluated: quantized layers' codes, scales and branches plus every float parameter left.</param>
/// <param name="QuantizedLayerBytes">The quantized layers' share of <paramref name="ModelWeightBytes"/> (0 for the reference).</param>
public sealed record CellCosts(double CalibrationSeconds, double SamplingSeconds, long PeakResidentBytes, bool PeakIsPerCell, long ModelWeightBytes, long QuantizedLayerBytes);
