using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// What a policy costs in weight memory before anything is quantized: every layer keeps one quantized
/// version per weight spec some step uses (a layer at W4 on some steps and W8 on others stores both).
/// </summary>
public static class PolicyMemory
{
    /// <summary>
    /// Bytes of one weight version of an <paramref name="outFeatures"/> × <paramref name="inFeatures"/> weight
    /// under <paramref name="spec"/>, as <see cref="QuantizedTensor.StorageBytes"/> counts it: int8/uint8 codes
    /// (two 4-bit codes per byte for ≤ 4 bits), float32 scales (and zero points for asymmetric grids).
    /// </summary>
    public static long WeightVersionBytes(QuantSpec spec, long outFeatures, long inFeatures)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!spec.IsEnabled) return 0;
        long codes = spec.Bits <= 4 ? outFeatures * ((inFeatures + 1) / 2) : outFeatures * inFeatures;
        long scales = spec.Granularity switch
        {
            QuantGranularity.PerTensor => 1,
            QuantGranularity.PerGroup => outFeatures * (inFeatures / spec.GroupSize),
            _ => outFeatures,
        };
        return codes + scales * sizeof(float) * (spec.Symmetric ? 1 : 2);
    }

    /// <summary>Bytes of every weight version <paramref name="policy"/> makes the given layers (name → [out, in]) keep.</summary>
    public static long EstimateWeightBytes(ITimestepPolicy policy, IReadOnlyDictionary<string, (long Out, long In)> layers)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(layers);
        return layers.Sum(l => policy.ConfigsFor(l.Key).Select(c => c.Weight).Distinct().Sum(s => WeightVersionBytes(s, l.Value.Out, l.Value.In)));
    }
}
