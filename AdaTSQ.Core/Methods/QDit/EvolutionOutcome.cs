namespace AdaTSQ.Methods.QDit;

/// <summary>What <see cref="GroupSizeEvolution.Run"/> found.</summary>
/// <param name="Best">The candidate with the lowest loss (one group size per layer, 0 = per channel).</param>
/// <param name="BestLoss">Its loss.</param>
/// <param name="Evaluations">Distinct candidates whose loss was computed (every one legal).</param>
/// <param name="BestLossPerGeneration">The best loss known when each generation's parents were chosen, then after the last generation.</param>
/// <param name="Losses">The loss of every evaluated candidate, in evaluation order.</param>
public sealed record EvolutionOutcome(IReadOnlyList<int> Best, double BestLoss, int Evaluations, IReadOnlyList<double> BestLossPerGeneration,
    IReadOnlyList<(IReadOnlyList<int> Candidate, double Loss)> Losses);
