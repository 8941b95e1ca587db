using AdaTSQ.Quantization;
namespace AdaTSQ.Pipeline;

/// <summary>The quantized weight versions one layer keeps after quantization, and their bytes.</summary>
/// <param name="Name">Dotted layer name.</param>
/// <param name="Specs">One spec per version, by bit-width: several when the policy uses several weight specs for the layer over
/// the steps, none when it keeps the layer's weight in full precision at every step.</param>
/// <param name="Bytes">Bytes of all of them (codes, scales, zero points), plus the layer's full-precision low-rank branch (SVDQuant) when it has one.</param>
public sealed record LayerWeightVersions(string Name, IReadOnlyList<QuantSpec> Specs, long Bytes);
