namespace AdaTSQ.Policies;

/// <summary>Consecutive sampling steps <paramref name="FirstStep"/>…<paramref name="LastStep"/> (inclusive) that share one static policy.</summary>
/// <param name="FirstStep">First step index of the group (0 = noisiest).</param>
/// <param name="LastStep">Last step index of the group.</param>
/// <param name="Policy">The configs of the group's steps.</param>
public sealed record TimestepGroup(int FirstStep, int LastStep, StaticTimestepPolicy Policy);
