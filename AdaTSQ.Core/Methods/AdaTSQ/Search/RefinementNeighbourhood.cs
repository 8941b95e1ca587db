namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>Which moves the local refinement of a searched policy tries (<see cref="BitWidthSearchOptions.RefinementRounds"/>).</summary>
public enum RefinementNeighbourhood
{
    /// <summary>
    /// One layer at one stage one width up or down, and pairs within one stage: one layer one width up and another
    /// one width down. The beam's choice of how many bits each stage spends changes only by single moves.
    /// </summary>
    WithinStage,

    /// <summary>
    /// The single moves of <see cref="WithinStage"/>, and pairs of any two (stage, layer) cells: one one width up, the
    /// other one width down, so bits can also move between stages. Many more moves (about (stages × layers)² pairs).
    /// </summary>
    AcrossStages,
}
