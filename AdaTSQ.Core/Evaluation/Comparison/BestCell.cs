namespace AdaTSQ.Evaluation.Comparison;

/// <summary>The method with the highest mean PSNR at one bit setting.</summary>
/// <param name="Bits">The bit setting.</param>
/// <param name="Cell">The best cell (null when every cell of the setting failed).</param>
/// <param name="Separated">
/// True when it wins (<see cref="ComparisonVerdict.Decide"/>) against every other successful cell of the setting;
/// false when at least one is not separated from it.
/// </param>
public sealed record BestCell(string Bits, ComparisonCell? Cell, bool Separated);
