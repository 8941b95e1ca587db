using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// What a policy costs in weight memory before anything is quantized: every layer keeps one quantized version
/// per distinct weight spec some step uses (a layer at W4 on some steps and W8 on others stores both), counted
/// exactly as <see cref="QuantizedTensor.StorageBytes"/> counts it. The float weights, which quantized layers
/// also keep, are not included.
/// </summary>
public static class PolicyMemory
{
    /// <summary>
    /// Bytes of one weight version of an <paramref name="outFeatures"/> × <paramref name="inFeatures"/> weight under
    /// <paramref name="spec"/>: int8/uint8 codes, two per byte for ≤ 4 bits (rows padded to an even length), plus
    /// float32 scales — one per tensor, per output channel, or per group of <see cref="QuantSpec.GroupSize"/> inputs —
    /// and as many float32 zero points for asymmetric grids. 0 for full precision.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is not positive.</exception>
    /// <exception cref="QuantSpecException">The spec cannot quantize such a weight (e.g. a group size that does not divide <paramref name="inFeatures"/>).</exception>
    public static long WeightVersionBytes(QuantSpec spec, long outFeatures, long inFeatures)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        if (!spec.IsEnabled) return 0;
        spec.Validate(QuantTarget.Weight, inFeatures, $"{outFeatures}×{inFeatures} weight");
        long codes = spec.Bits <= 4 ? outFeatures * ((inFeatures + 1) / 2) : outFeatures * inFeatures;
        long scales = spec.Granularity switch
        {
            QuantGranularity.PerTensor => 1,
            QuantGranularity.PerGroup => outFeatures * (inFeatures / spec.GroupSize),
            _ => outFeatures,
        };
        return codes + scales * sizeof(float) * (spec.Symmetric ? 1 : 2);
    }

    /// <summary>
    /// Bytes of every weight version <paramref name="policy"/> makes the given layers keep: for each layer
    /// (name → [out, in] features), the distinct weight specs of <see cref="ITimestepPolicy.ConfigsFor"/>.
    /// Equals <c>QuantizationResult.QuantizedWeightBytes</c> after quantizing those layers with the policy, unless the
    /// layers also keep a low-rank branch (SVDQuant), whose bytes that total includes.
    /// </summary>
    public static long EstimateWeightBytes(ITimestepPolicy policy, IReadOnlyDictionary<string, (long Out, long In)> layers)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(layers);
        return layers.Sum(l => policy.ConfigsFor(l.Key).Select(c => c.Weight).Distinct().Sum(s => WeightVersionBytes(s, l.Value.Out, l.Value.In)));
    }
}
