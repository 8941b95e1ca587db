namespace AdaTSQ.Quantization;

/// <summary>
/// How one tensor is quantized: bit-width, symmetric or asymmetric integer grid, granularity of the
/// scales, static or dynamic ranges (activations) and a clipping ratio. Immutable; compare by value.
/// </summary>
/// <remarks>
/// <para>Grids. Symmetric: integers in [−(2^(b−1)−1), 2^(b−1)−1] (the restricted range, so that 0
/// is exact and the grid is symmetric), scale = clip·max|x| / (2^(b−1)−1), no zero point.
/// Asymmetric: integers in [0, 2^b−1], range [min(x,0), max(x,0)]·clip, scale = range / (2^b−1),
/// zero point = round(−min/scale). Dequantization is (q − zero)·scale.</para>
/// <para>Bits are 2–8, or 16, which means "not quantized" (<see cref="FullPrecision"/>).</para>
/// </remarks>
public sealed record QuantSpec
{
    /// <summary>The bit-width that means "keep full precision".</summary>
    public const int FullPrecisionBits = 16;

    /// <summary>The smallest supported bit-width.</summary>
    public const int MinBits = 2;

    /// <summary>The largest supported integer bit-width.</summary>
    public const int MaxBits = 8;

    /// <summary>The spec that leaves a tensor in full precision.</summary>
    public static QuantSpec FullPrecision { get; } = new() { Bits = FullPrecisionBits, Granularity = QuantGranularity.PerTensor };

    /// <summary>Bit-width: 2–8, or 16 for full precision. Default 8.</summary>
    public int Bits { get; init; } = 8;

    /// <summary>Symmetric (no zero point) or asymmetric grid. Default symmetric.</summary>
    public bool Symmetric { get; init; } = true;

    /// <summary>Which elements share a scale. Default per output channel.</summary>
    public QuantGranularity Granularity { get; init; } = QuantGranularity.PerChannel;

    /// <summary>Group size along the input dimension for <see cref="QuantGranularity.PerGroup"/>; 0 otherwise.</summary>
    public int GroupSize { get; init; }

    /// <summary>
    /// Activations only: true computes the range of every call's input at run time; false uses a
    /// range calibrated beforehand (static). Ignored for weights. Default true.
    /// </summary>
    public bool Dynamic { get; init; } = true;

    /// <summary>The range is shrunk by this factor before the scale is computed, in (0, 1]. Default 1.</summary>
    public double ClipRatio { get; init; } = 1.0;

    /// <summary>False when the spec means "full precision".</summary>
    public bool IsEnabled => Bits != FullPrecisionBits;

    /// <summary>The smallest integer of the grid.</summary>
    public int QMin => Symmetric ? -((1 << (Bits - 1)) - 1) : 0;

    /// <summary>The largest integer of the grid.</summary>
    public int QMax => Symmetric ? (1 << (Bits - 1)) - 1 : (1 << Bits) - 1;

    /// <summary>A weight spec: per output channel, or per group when <paramref name="groupSize"/> &gt; 0.</summary>
    public static QuantSpec Weight(int bits, int groupSize = 0, bool symmetric = true, double clipRatio = 1.0) =>
        bits == FullPrecisionBits ? FullPrecision : new()
        {
            Bits = bits,
            Symmetric = symmetric,
            Granularity = groupSize > 0 ? QuantGranularity.PerGroup : QuantGranularity.PerChannel,
            GroupSize = groupSize,
            ClipRatio = clipRatio,
        };

    /// <summary>
    /// An activation spec: dynamic per-token (the default), or static per-tensor with a calibrated
    /// range when <paramref name="dynamic"/> is false.
    /// </summary>
    public static QuantSpec Activation(int bits, bool dynamic = true, bool symmetric = true, double clipRatio = 1.0) =>
        bits == FullPrecisionBits ? FullPrecision : new()
        {
            Bits = bits,
            Symmetric = symmetric,
            Granularity = dynamic ? QuantGranularity.PerToken : QuantGranularity.PerTensor,
            Dynamic = dynamic,
            ClipRatio = clipRatio,
        };

    /// <summary>
    /// A dynamic per-token × per-group activation spec: each token (row) gets one scale per group of
    /// <paramref name="groupSize"/> consecutive input features, computed at run time
    /// (<c>scale[m, g] = clip·max_{k∈g}|x[m, k]| / qmax</c>), as SVDQuant / nunchaku quantize INT4
    /// activations in groups of 64. <paramref name="groupSize"/> 0 gives the per-token spec of
    /// <see cref="Activation(int, bool, bool, double)"/>; the group must divide the layer's input
    /// dimension (checked by <see cref="FindProblems"/> where the layer is known).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="groupSize"/> is negative.</exception>
    public static QuantSpec Activation(int bits, int groupSize, bool symmetric = true, double clipRatio = 1.0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(groupSize);
        if (groupSize == 0 || bits == FullPrecisionBits) return Activation(bits, dynamic: true, symmetric, clipRatio);
        return new()
        {
            Bits = bits,
            Symmetric = symmetric,
            Granularity = QuantGranularity.PerGroup,
            GroupSize = groupSize,
            Dynamic = true,
            ClipRatio = clipRatio,
        };
    }

    /// <summary>
    /// Every reason this spec cannot quantize a <paramref name="target"/> whose reduction (input)
    /// dimension is <paramref name="inputFeatures"/> (null when not known yet); empty when valid.
    /// With a null <paramref name="target"/> only the arithmetic is checked, not the role.
    /// </summary>
    public IReadOnlyList<string> FindProblems(QuantTarget? target, long? inputFeatures = null)
    {
        var problems = new List<string>();
        if (!IsEnabled) return problems;
        string what = target switch { QuantTarget.Weight => "weight", QuantTarget.Activation => "activation", _ => "tensor" };
        if (Bits < MinBits || Bits > MaxBits)
            problems.Add($"{what} bits = {Bits} is not supported: use {MinBits}–{MaxBits}, or {FullPrecisionBits} for full precision.");
        if (!Enum.IsDefined(Granularity))
            problems.Add($"{what} granularity {(int)Granularity} is not a QuantGranularity value.");
        if (target == QuantTarget.Weight && Granularity == QuantGranularity.PerToken)
            problems.Add("weight granularity PerToken is for activations; use PerChannel, PerGroup or PerTensor for weights.");
        if (target == QuantTarget.Activation && Granularity == QuantGranularity.PerChannel)
            problems.Add("activation granularity PerChannel is for weights; use PerToken (dynamic), PerTensor or PerGroup for activations.");
        if (target == QuantTarget.Activation && !Dynamic && Granularity is QuantGranularity.PerToken or QuantGranularity.PerGroup)
            problems.Add($"static (calibrated) activation ranges need PerTensor granularity, got {Granularity}: tokens are not known before run time.");
        if (Granularity == QuantGranularity.PerGroup)
        {
            if (GroupSize <= 0)
                problems.Add($"{what} granularity PerGroup needs a positive GroupSize, got {GroupSize}.");
            else if (inputFeatures is long n && n % GroupSize != 0)
                problems.Add($"{what} group size {GroupSize} does not divide the input dimension {n}.");
        }
        else if (GroupSize != 0)
        {
            problems.Add($"{what} GroupSize = {GroupSize} is set but granularity is {Granularity}; use PerGroup or set GroupSize to 0.");
        }
        if (!(ClipRatio > 0 && ClipRatio <= 1))
            problems.Add($"{what} clip ratio {ClipRatio} is outside (0, 1].");
        return problems;
    }

    /// <summary>Throws a <see cref="QuantSpecException"/> listing every problem, prefixed with <paramref name="context"/>.</summary>
    public void Validate(QuantTarget? target, long? inputFeatures = null, string? context = null)
    {
        var problems = FindProblems(target, inputFeatures);
        if (problems.Count == 0) return;
        throw new QuantSpecException(context is null ? problems : problems.Select(p => $"{context}: {p}").ToList());
    }

    /// <summary>
    /// A short label, e.g. <c>int4 g64 sym</c>, <c>int8 per-token sym</c>, <c>fp16</c>. A per-group spec prints
    /// the same for weights and activations (per output channel × group, per token × group): the role is the
    /// context's (<c>weight …, activation …</c> in policy tables).
    /// </summary>
    public override string ToString()
    {
        if (!IsEnabled) return "fp16";
        string gran = Granularity switch
        {
            QuantGranularity.PerTensor => "per-tensor",
            QuantGranularity.PerChannel => "per-channel",
            QuantGranularity.PerGroup => $"g{GroupSize}",
            QuantGranularity.PerToken => "per-token",
            _ => Granularity.ToString(),
        };
        string label = $"int{Bits} {gran} {(Symmetric ? "sym" : "asym")}";
        if (Granularity is QuantGranularity.PerToken or QuantGranularity.PerTensor && !Dynamic) label += " static";
        if (ClipRatio != 1.0) label += $" clip{ClipRatio:G3}";
        return label;
    }
}
