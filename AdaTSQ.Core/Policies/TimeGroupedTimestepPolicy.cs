using System.Collections.Concurrent;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// Consecutive sampling steps share a config (TQ-DiT's time grouping): groups of steps, each with a
/// <see cref="StaticTimestepPolicy"/> (a default and per-layer overrides).
/// </summary>
/// <remarks>
/// The groups must cover steps 0…<see cref="StepCount"/>−1 contiguously, without overlap. A sampler with another
/// number of steps is mapped by position in the trajectory (<see cref="MapStep"/>, as
/// <see cref="DynamicTimestepPolicy.MapStep"/>); outside any step a layer uses its most precise config over the
/// groups (highest weight bits, then activation bits), so that case adds no weight version.
/// </remarks>
public sealed class TimeGroupedTimestepPolicy : ITimestepPolicy
{
    private readonly TimestepGroup[] _byStep;
    private readonly ConcurrentDictionary<string, LayerQuantConfig> _stepless = new();

    /// <summary>Creates the policy.</summary>
    /// <param name="groups">The groups, in any order; together they cover steps 0…N−1 exactly once.</param>
    /// <param name="name">A name for logs (default: "time-grouped (G groups)").</param>
    /// <exception cref="ArgumentException">No groups, a null group or policy, a group that ends before it starts,
    /// a gap (the message names the steps in no group) or an overlap (it names both groups).</exception>
    public TimeGroupedTimestepPolicy(IReadOnlyList<TimestepGroup> groups, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count == 0) throw new ArgumentException("a time-grouped policy needs at least one group.", nameof(groups));
        if (groups.Any(g => g is null)) throw new ArgumentException("a group is null.", nameof(groups));
        var ordered = groups.OrderBy(g => g.FirstStep).ThenBy(g => g.LastStep).ToList();
        TimestepGroup? previous = null;
        foreach (var g in ordered)
        {
            if (g.Policy is null) throw new ArgumentException($"group of steps {g.FirstStep}…{g.LastStep} has no policy.", nameof(groups));
            if (g.FirstStep < 0) throw new ArgumentException($"group of steps {g.FirstStep}…{g.LastStep} starts before step 0.", nameof(groups));
            if (g.LastStep < g.FirstStep) throw new ArgumentException($"group of steps {g.FirstStep}…{g.LastStep} ends before it starts.", nameof(groups));
            int next = previous is null ? 0 : previous.LastStep + 1;
            if (g.FirstStep > next) throw new ArgumentException($"steps {next}…{g.FirstStep - 1} are in no group.", nameof(groups));
            if (g.FirstStep < next)
                throw new ArgumentException($"groups of steps {previous!.FirstStep}…{previous.LastStep} and {g.FirstStep}…{g.LastStep} overlap (steps {g.FirstStep}…{Math.Min(previous.LastStep, g.LastStep)}).", nameof(groups));
            previous = g;
        }
        Groups = ordered;
        _byStep = ordered.SelectMany(g => Enumerable.Repeat(g, g.LastStep - g.FirstStep + 1)).ToArray();
        Name = name ?? $"time-grouped ({Groups.Count} groups)";
    }

    /// <summary>
    /// Splits <paramref name="stepCount"/> steps into <paramref name="policies"/>.Count equal consecutive groups, in
    /// order (the first <c>stepCount mod count</c> groups one step longer when the count does not divide the steps).
    /// </summary>
    /// <exception cref="ArgumentException">No policies, or fewer steps than policies.</exception>
    public static TimeGroupedTimestepPolicy Even(int stepCount, IReadOnlyList<StaticTimestepPolicy> policies, string? name = null)
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
        return new TimeGroupedTimestepPolicy(groups, name);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The groups, by first step.</summary>
    public IReadOnlyList<TimestepGroup> Groups { get; }

    /// <summary>The number of sampling steps the policy was made for (the groups cover 0…StepCount−1).</summary>
    public int StepCount => _byStep.Length;

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => Groups.SelectMany(g => g.Policy.Overrides.Keys).Distinct().ToList();

    /// <summary>The group sampler step <paramref name="step"/> falls in (mapped by position when the step counts differ).</summary>
    public TimestepGroup GroupAt(TimestepInfo step) => _byStep[MapStep(step)];

    /// <summary>The policy's step index used for sampler step <paramref name="step"/> (by position when the step counts differ).</summary>
    public int MapStep(TimestepInfo step) => StepMapping.ToPolicyStep(step, StepCount);

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step)
    {
        if (step is { } s) return GroupAt(s).Policy.Resolve(layerName, null);
        if (_stepless.TryGetValue(layerName, out var known)) return known;
        var mostPrecise = StepMapping.MostPrecise(ConfigsFor(layerName));
        return _stepless.GetOrAdd(layerName, mostPrecise);
    }

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        Groups.Select(g => g.Policy.Resolve(layerName, null)).Distinct().ToList();
}
