namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>One change of a refinement move: a layer's weight bits at one stage, one width up or down.</summary>
/// <param name="Stage">The stage (group of <see cref="BitWidthSearchOptions.StepsPerStage"/> steps), 0 = the first (noisiest).</param>
/// <param name="Layer">The layer's dotted name.</param>
/// <param name="FromBits">Its weight bits before the move.</param>
/// <param name="ToBits">Its weight bits after the move (the next width of the set up or down).</param>
public sealed record RefinementMove(int Stage, string Layer, int FromBits, int ToBits)
{
    /// <summary>E.g. <c>stage 3 blocks.0.mlp.fc1 W4→W6</c>.</summary>
    public override string ToString() => $"stage {Stage} {Layer} W{FromBits}→W{ToBits}";
}
