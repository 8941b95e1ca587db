using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// Consecutive sampling steps share a config (TQ-DiT's time grouping): groups of steps, each with a
/// <see cref="StaticTimestepPolicy"/> (a default and per-layer overrides).
/// </summary>
/// <remarks>
/// The groups must cover steps 0…<see cref="StepCount"/>−1 contiguously. A sampler with another number of
/// steps is mapped by position in the trajectory (as <see cref="DynamicTimestepPolicy.MapStep"/>); outside any
/// step a layer uses its most precise config over the groups (highest weight bits, then activation bits).
/// </remarks>
public sealed class TimeGroupedTimestepPolicy : ITimestepPolicy
{
    private readonly TimestepGroup[] _byStep;

    /// <summary>Creates the policy.</summary>
    /// <exception cref="ArgumentException">The groups leave a gap, overlap, or do not start at step 0.</exception>
    public TimeGroupedTimestepPolicy(IReadOnlyList<TimestepGroup> groups, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count == 0) throw new ArgumentException("a time-grouped policy needs at least one group.", nameof(groups));
        var ordered = groups.OrderBy(g => g.FirstStep).ToList();
        int next = 0;
        foreach (var g in ordered)
        {
            if (g.Policy is null) throw new ArgumentException($"group {g.FirstStep}…{g.LastStep} has no policy.", nameof(groups));
            if (g.LastStep < g.FirstStep) throw new ArgumentException($"group {g.FirstStep}…{g.LastStep} ends before it starts.", nameof(groups));
            if (g.FirstStep > next) throw new ArgumentException($"steps {next}…{g.FirstStep - 1} are in no group.", nameof(groups));
            if (g.FirstStep < next) throw new ArgumentException($"group {g.FirstStep}…{g.LastStep} overlaps the steps before {next}.", nameof(groups));
            next = g.LastStep + 1;
        }
        Groups = ordered;
        _byStep = ordered.SelectMany(g => Enumerable.Repeat(g, g.LastStep - g.FirstStep + 1)).ToArray();
        Name = name ?? $"time-grouped ({Groups.Count} groups)";
    }

    /// <summary>Splits <paramref name="stepCount"/> steps into <paramref name="policies"/>.Count equal consecutive groups (the first groups one step longer when it does not divide).</summary>
    public static TimeGroupedTimestepPolicy Even(int stepCount, IReadOnlyList<StaticTimestepPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        if (policies.Count == 0 || stepCount < policies.Count)
            throw new ArgumentException($"cannot split {stepCount} steps into {policies.Count} groups.", nameof(stepCount));
        var groups = new List<TimestepGroup>();
        for (int g = 0, first = 0; g < policies.Count; g++)
        {
            int size = stepCount / policies.Count + (g < stepCount % policies.Count ? 1 : 0);
            groups.Add(new TimestepGroup(first, first + size - 1, policies[g]));
            first += size;
        }
        return new TimeGroupedTimestepPolicy(groups);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The groups, by first step.</summary>
    public IReadOnlyList<TimestepGroup> Groups { get; }

    /// <summary>Steps covered.</summary>
    public int StepCount => _byStep.Length;

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => Groups.SelectMany(g => g.Policy.Overrides.Keys).Distinct().ToList();

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step)
    {
        if (step is not { } s)
            return ConfigsFor(layerName).OrderByDescending(c => c.WeightBits).ThenByDescending(c => c.ActivationBits).First();
        int k = s.StepCount == StepCount ? s.StepIndex
            : StepCount == 1 || s.StepCount <= 1 ? 0
            : (int)Math.Round(s.Progress * (StepCount - 1), MidpointRounding.AwayFromZero);
        return _byStep[k].Policy.Resolve(layerName, null);
    }

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        Groups.Select(g => g.Policy.Resolve(layerName, null)).Distinct().ToList();
}
