namespace AdaTSQ.Kernels;

/// <summary>
/// How per-token × per-group activation scales (one scale per row and per group of <c>aGroup</c>
/// consecutive columns of K) meet the weights' scale groups in the integer kernels. The kernels fold
/// both scales per kernel group: <c>C[m, n] = Σ_g sa[m, g·group / aGroup] · sb[g, n] · acc_g[m, n] + bias[n]</c>,
/// so the activation group must be a whole number of kernel groups (the group the weights are packed with).
/// </summary>
/// <remarks>
/// <para>Planning (<see cref="PackingGroup"/>): weights per channel (or per tensor) are packed at the
/// activation group, their scale replicated per group; weights whose group is a multiple of the
/// activation group are packed at the activation group, each weight scale replicated over the
/// activation groups it covers; weights whose group is smaller and divides the activation group keep
/// their group (the kernels then read one activation scale for several weight groups). Every other
/// combination is refused.</para>
/// </remarks>
public static class ActivationGrouping
{
    /// <summary>
    /// The group size to pack weights with so that activations quantized in groups of
    /// <paramref name="activationGroupSize"/> can run against them, or null with <paramref name="why"/>.
    /// </summary>
    /// <param name="weightGroupSize">The weights' own group size; 0 for per-channel (or per-tensor) scales.</param>
    /// <param name="activationGroupSize">Columns of K per activation scale; 0 for one scale per row (then the weights' own group is returned).</param>
    /// <param name="k">The reduction dimension K.</param>
    /// <param name="weightBits">The weights' bits (≤ 4 run on the 4-bit kernels, whose groups are multiples of 8; others of 4).</param>
    /// <param name="packingGroupSize">The group to pack with (0 = per channel, only when <paramref name="activationGroupSize"/> is 0).</param>
    /// <param name="why">Why the combination cannot run on the integer kernels (null when it can).</param>
    public static bool TryPackingGroup(int weightGroupSize, int activationGroupSize, int k, int weightBits, out int packingGroupSize, out string? why)
    {
        packingGroupSize = weightGroupSize;
        why = null;
        int unit = weightBits <= 4 ? 8 : 4;
        if (k <= 0) { why = $"K = {k} must be positive."; return false; }
        if (weightGroupSize < 0) { why = $"weight group size {weightGroupSize} must be 0 (per channel) or positive."; return false; }
        if (weightGroupSize > 0 && weightGroupSize % unit != 0)
        {
            why = $"weight group size {weightGroupSize} is not a multiple of {unit} ({(unit == 8 ? "4-bit" : "8-bit")} kernels).";
            return false;
        }
        if (activationGroupSize == 0) return true;
        if (activationGroupSize < 0) { why = $"activation group size {activationGroupSize} must be 0 (per token) or positive."; return false; }
        if (k % activationGroupSize != 0)
        {
            why = $"activation group size {activationGroupSize} does not divide K = {k}.";
            return false;
        }
        if (weightGroupSize > 0 && weightGroupSize < activationGroupSize)
        {
            if (activationGroupSize % weightGroupSize != 0)
            {
                why = $"activation group size {activationGroupSize} is not a multiple of the weight group size {weightGroupSize} "
                    + "(the kernels fold both scales per group: one must divide the other).";
                return false;
            }
            return true;  // keep the weight group; one activation scale covers several weight groups
        }
        if (weightGroupSize > 0 && weightGroupSize % activationGroupSize != 0)
        {
            why = $"weight group size {weightGroupSize} is not a multiple of the activation group size {activationGroupSize} "
                + "(the kernels fold both scales per group: one must divide the other).";
            return false;
        }
        if (activationGroupSize % unit != 0)
        {
            why = $"activation group size {activationGroupSize}: the weights would be packed at that group, which the "
                + $"{(unit == 8 ? "4-bit" : "8-bit")} kernels need to be a multiple of {unit}.";
            return false;
        }
        packingGroupSize = activationGroupSize;
        return true;
    }

    /// <summary>As <see cref="TryPackingGroup"/>, throwing <see cref="NotSupportedException"/> with the reason.</summary>
    /// <exception cref="NotSupportedException">The combination cannot run on the integer kernels.</exception>
    public static int PackingGroup(int weightGroupSize, int activationGroupSize, int k, int weightBits) =>
        TryPackingGroup(weightGroupSize, activationGroupSize, k, weightBits, out int group, out string? why)
            ? group : throw new NotSupportedException($"per-group activations on the integer kernels: {why}");

    /// <summary>
    /// Why activations in groups of <paramref name="activationGroupSize"/> cannot run against
    /// <paramref name="weights"/> as packed (null when they can): the group must divide K and be a
    /// multiple of the weights' kernel group (<see cref="PackedWeights.Group"/>).
    /// </summary>
    public static string? Problem(PackedWeights weights, int activationGroupSize)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (activationGroupSize == 0) return null;
        if (activationGroupSize < 0) return $"activation group size {activationGroupSize} must be 0 (per token) or positive.";
        if (weights.K % activationGroupSize != 0) return $"activation group size {activationGroupSize} does not divide K = {weights.K}.";
        if (activationGroupSize % weights.Group != 0)
            return $"activation group size {activationGroupSize} is not a multiple of the group the weights are packed with ({weights.Group}): "
                + $"pack the weights with group size {activationGroupSize} (ActivationGrouping.PackingGroup plans it; replicate per-channel scales per group).";
        return null;
    }

    /// <summary>
    /// Weight scales <c>[n, groups]</c> at <paramref name="weightGroupSize"/> (0 = one per row) re-expressed at
    /// <paramref name="packingGroupSize"/>, a divisor of the weight group (or of K for per-channel scales):
    /// each scale repeated over the packing groups it covers. Returns <paramref name="scales"/> itself when the groups are equal.
    /// </summary>
    public static float[] ReplicateScales(ReadOnlySpan<float> scales, int n, int k, int weightGroupSize, int packingGroupSize)
    {
        int wGroup = weightGroupSize > 0 ? weightGroupSize : k;
        int wGroups = (k + wGroup - 1) / wGroup;
        if (scales.Length != (long)n * wGroups) throw new ArgumentException($"weight scales: expected n × groups = {n} × {wGroups}, found {scales.Length}.", nameof(scales));
        if (packingGroupSize <= 0 || packingGroupSize == weightGroupSize || packingGroupSize == wGroup && weightGroupSize == 0)
            return scales.ToArray();
        if (wGroup % packingGroupSize != 0 || k % packingGroupSize != 0)
            throw new ArgumentException($"packing group {packingGroupSize} must divide the weight group {wGroup} and K = {k}.", nameof(packingGroupSize));
        int repeat = wGroup / packingGroupSize, groups = k / packingGroupSize;
        var result = new float[checked(n * groups)];
        for (int row = 0; row < n; row++)
            for (int g = 0; g < groups; g++)
                result[row * groups + g] = scales[row * wGroups + g / repeat];
        return result;
    }
}
