using AdaTSQ.Abstractions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// Q-DiT's evolutionary search over per-layer group sizes (the scheme of its <c>scripts/evolution.py</c>, after
/// Once-for-All): usable on any loss, without a model. A candidate is one group size per layer, drawn from that layer's
/// choices; only candidates the constraint accepts are evaluated, each once.
/// </summary>
/// <remarks>
/// <para>Generation 0: the preset candidates (e.g. the uniform reference), then uniformly random ones up to
/// <see cref="QDitOptions.Population"/>. Each following generation: the <see cref="QDitOptions.SelectCount"/> best
/// candidates evaluated so far (lowest loss; ties by candidate text) are the parents;
/// <see cref="QDitOptions.MutationCount"/> children copy a random parent and redraw each layer with probability
/// <see cref="QDitOptions.MutationProbability"/>; <see cref="QDitOptions.CrossoverCount"/> children take each layer from
/// one of two random parents with probability ½; random candidates fill the rest of the population. A child that is
/// illegal or already evaluated is redrawn, up to <see cref="QDitOptions.AttemptsPerChild"/> draws per wanted child.</para>
/// <para>All draws come from one <see cref="Random"/> seeded with <see cref="QDitOptions.Seed"/>, so with a deterministic
/// loss the search is reproducible.</para>
/// </remarks>
public sealed class GroupSizeEvolution
{
    private readonly IReadOnlyList<IReadOnlyList<int>> _choices;
    private readonly Func<IReadOnlyList<int>, bool> _isLegal;
    private readonly QDitOptions _options;
    private readonly ILogger _logger;

    /// <summary>Creates the search.</summary>
    /// <param name="choices">Each layer's allowed group sizes (at least one each).</param>
    /// <param name="isLegal">The constraint (e.g. <see cref="GroupSizeCost.IsLegal"/>).</param>
    /// <param name="options">Population, generations, counts, probabilities and seed.</param>
    /// <param name="logger">Where each generation is logged.</param>
    /// <exception cref="ArgumentException">No layers, or a layer without choices.</exception>
    /// <exception cref="Pipeline.QuantizationConfigurationException">Invalid options.</exception>
    public GroupSizeEvolution(IReadOnlyList<IReadOnlyList<int>> choices, Func<IReadOnlyList<int>, bool> isLegal, QDitOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(choices);
        _isLegal = isLegal ?? throw new ArgumentNullException(nameof(isLegal));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        var problems = options.FindProblems();
        if (problems.Count > 0) throw new Pipeline.QuantizationConfigurationException(problems);
        if (choices.Count == 0) throw new ArgumentException("no layers to search.", nameof(choices));
        for (int l = 0; l < choices.Count; l++)
            if (choices[l] is null || choices[l].Count == 0) throw new ArgumentException($"layer {l} has no group size to choose from.", nameof(choices));
        _choices = choices;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>Runs the search.</summary>
    /// <param name="loss">The loss of a legal candidate (lower is better); called once per distinct candidate.</param>
    /// <param name="preset">Candidates evaluated first (each must be legal and use the layers' choices), e.g. the uniform reference.</param>
    /// <param name="progress">Receives one report per evaluated candidate (stage "Q-DiT search").</param>
    /// <param name="cancellationToken">Checked before every evaluation.</param>
    /// <exception cref="ArgumentException">A preset is not a legal candidate.</exception>
    /// <exception cref="InvalidOperationException">Generation 0 found no legal candidate.</exception>
    public EvolutionOutcome Run(Func<IReadOnlyList<int>, double> loss, IEnumerable<IReadOnlyList<int>>? preset = null,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(loss);
        var o = _options;
        var rng = new Random(o.Seed);
        var seen = new Dictionary<string, double>(StringComparer.Ordinal);
        var evaluated = new List<(IReadOnlyList<int>, double)>();
        int total = o.Population * (1 + o.Generations);

        bool TryEvaluate(int[] candidate, List<int[]> into)
        {
            string key = Key(candidate);
            if (seen.ContainsKey(key) || !_isLegal(candidate)) return false;
            cancellationToken.ThrowIfCancellationRequested();
            double value = loss(candidate);
            if (double.IsNaN(value)) value = double.PositiveInfinity;
            seen[key] = value;
            evaluated.Add((candidate, value));
            into.Add(candidate);
            progress?.Report(new QuantizationProgress("Q-DiT search", evaluated.Count, total, $"loss {value:G4}"));
            return true;
        }
        void Fill(List<int[]> into, int count, Func<int[]> make)
        {
            int wanted = into.Count + count;
            for (int attempt = 0; into.Count < wanted && attempt < count * o.AttemptsPerChild; attempt++)
                TryEvaluate(make(), into);
        }
        int[] Draw() => _choices.Select(c => c[rng.Next(c.Count)]).ToArray();

        var candidates = new List<int[]>();
        foreach (var p in preset ?? [])
        {
            var candidate = p.ToArray();
            if (candidate.Length != _choices.Count || candidate.Where((g, l) => !_choices[l].Contains(g)).Any())
                throw new ArgumentException($"preset [{Key(candidate)}] is not one of the layers' choices.", nameof(preset));
            if (!_isLegal(candidate)) throw new ArgumentException($"preset [{Key(candidate)}] violates the constraint.", nameof(preset));
            TryEvaluate(candidate, candidates);
        }
        Fill(candidates, o.Population - candidates.Count, Draw);
        if (candidates.Count == 0) throw new InvalidOperationException("Q-DiT search: no legal candidate in the first generation; loosen the constraint or give a preset.");

        var parents = new List<int[]>();
        var history = new List<double>();
        for (int generation = 0; generation <= o.Generations; generation++)
        {
            parents = parents.Concat(candidates).OrderBy(c => seen[Key(c)]).ThenBy(Key, StringComparer.Ordinal).Take(o.SelectCount).ToList();
            history.Add(seen[Key(parents[0])]);
            _logger.LogDebug("Q-DiT generation {Generation}: {Count} new candidates, best loss {Loss:G6} [{Best}]", generation, candidates.Count, history[^1], Key(parents[0]));
            if (generation == o.Generations) break;
            candidates = [];
            Fill(candidates, o.MutationCount, () =>
            {
                var child = parents[rng.Next(parents.Count)].ToArray();
                for (int l = 0; l < child.Length; l++)
                    if (rng.NextDouble() < o.MutationProbability) child[l] = _choices[l][rng.Next(_choices[l].Count)];
                return child;
            });
            Fill(candidates, o.CrossoverCount, () =>
            {
                var a = parents[rng.Next(parents.Count)];
                var b = parents[rng.Next(parents.Count)];
                return a.Select((g, l) => rng.NextDouble() < 0.5 ? g : b[l]).ToArray();
            });
            Fill(candidates, o.Population - candidates.Count, Draw);
        }
        return new EvolutionOutcome(parents[0], seen[Key(parents[0])], evaluated.Count, history, evaluated);
    }

    private static string Key(IReadOnlyList<int> candidate) => string.Join(",", candidate);
}
