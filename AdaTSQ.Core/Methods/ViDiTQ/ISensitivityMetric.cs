using static TorchSharp.torch;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// One quality aspect of ViDiT-Q's metric-decoupled sensitivity: how far the final samples of a model with one layer
/// quantized are from the full-precision model's samples of the same noise, as seen by this aspect. The paper measures
/// aspects with separate metrics (e.g. CLIPScore for text–image alignment, optical flow for temporal quality); this
/// library's image DiT has no text or time axis, so the built-ins are <see cref="FrequencyBandMseMetric"/> (layout vs
/// detail) and <see cref="ClassProbabilityMetric"/> (semantics, through a classifier).
/// </summary>
public interface ISensitivityMetric
{
    /// <summary>A short, unique name for reports (e.g. <c>structure-mse</c>).</summary>
    string Name { get; }

    /// <summary>The distance of <paramref name="samples"/> from <paramref name="reference"/> (both <c>[B, C, H, W]</c>): finite, ≥ 0, 0 when equal.</summary>
    double Score(Tensor samples, Tensor reference);
}
