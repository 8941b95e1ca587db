namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>What the local refinement after the beam did (<see cref="BitWidthSearchOptions.RefinementRounds"/>).</summary>
/// <param name="Rounds">Rounds run (each evaluates a set of moves and accepts at most one).</param>
/// <param name="MovesEvaluated">Moves evaluated end to end, over all rounds.</param>
/// <param name="Accepted">The accepted moves in order, each a list of its changes (one, or two for a pair).</param>
/// <param name="StartMse">Final MSE against full precision of the beam's best policy, run on its own (not batched with other paths).</param>
/// <param name="FinalMse">The same for the refined policy (equal to <paramref name="StartMse"/> when no move was accepted).</param>
/// <param name="Converged">
/// True when the last round evaluated every feasible move of the neighbourhood and none lowered the error: the
/// refined policy is a local optimum of it. False when the rounds ran out, or the rounds evaluated only a sample
/// (<see cref="BitWidthSearchOptions.RefinementMovesPerRound"/>).
/// </param>
/// <param name="ModelEvaluations">Model calls the refinement made (included in <see cref="BitWidthSearchResult.ModelEvaluations"/>).</param>
/// <param name="WallTime">Wall time of the refinement.</param>
public sealed record RefinementReport(int Rounds, int MovesEvaluated, IReadOnlyList<IReadOnlyList<RefinementMove>> Accepted,
    double StartMse, double FinalMse, bool Converged, long ModelEvaluations, TimeSpan WallTime);
