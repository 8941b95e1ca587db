namespace AdaTSQ.Quantization;

/// <summary>The quantized weight versions one layer keeps after quantization, and their bytes.</summary>
/// <param name="Name">Dotted layer name.</param>
/// <param name="Specs">One spec per version (several when the policy uses several weight bit-widths for the layer).</param>
/// <param name="Bytes">Bytes of all of them (codes, scales, zero points).</param>
public sealed record LayerWeightVersions(string Name, IReadOnlyList<QuantSpec> Specs, long Bytes);
