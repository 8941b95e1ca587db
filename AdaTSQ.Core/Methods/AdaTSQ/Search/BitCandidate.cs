namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>One choice a stage can make: a weight bit-width for every searched layer.</summary>
/// <param name="Level">The target average weight bits the candidate was made for.</param>
/// <param name="Bits">The weight bits of each layer, in the search's layer order.</param>
/// <param name="AverageWeightBits">Parameter-weighted average of <paramref name="Bits"/>.</param>
public sealed record BitCandidate(double Level, IReadOnlyList<int> Bits, double AverageWeightBits)
{
    /// <summary>True when both give every layer the same bits.</summary>
    public bool SameBits(BitCandidate other) => Bits.SequenceEqual(other.Bits);

    /// <summary>E.g. <c>4.00 (W3×6, W6×24)</c>.</summary>
    public override string ToString() => Format("W");

    /// <summary>E.g. <c>6.00 (A4×6, A8×24)</c> with <paramref name="letter"/> "A" (the activation axis).</summary>
    public string Format(string letter) =>
        FormattableString.Invariant($"{AverageWeightBits:F2} ({string.Join(", ", Bits.GroupBy(b => b).OrderBy(g => g.Key).Select(g => $"{letter}{g.Key}×{g.Count()}"))})");
}
