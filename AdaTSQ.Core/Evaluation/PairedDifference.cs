namespace AdaTSQ.Evaluation;

/// <summary>The mean paired difference b − a, over <see cref="Count"/> pairs.</summary>
/// <param name="Count">Pairs used (both values finite).</param>
/// <param name="Excluded">Pairs left out because a value was not finite (e.g. +∞ PSNR of identical images).</param>
/// <param name="MeanA">Mean of a over the pairs used.</param>
/// <param name="MeanB">Mean of b over the pairs used.</param>
/// <param name="Difference">Mean of b − a with its Student-t interval.</param>
public sealed record PairedDifference(int Count, int Excluded, double MeanA, double MeanB, ConfidenceInterval Difference);
