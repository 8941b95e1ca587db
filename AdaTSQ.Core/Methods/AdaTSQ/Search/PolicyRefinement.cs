using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// Local search over per-layer bits after the beam (<see cref="BitWidthSearchOptions.RefinementRounds"/>): starting
/// from the beam's best policy, each round evaluates moves of the <see cref="RefinementNeighbourhood"/> — one layer
/// at one stage one width up or down, or a pair of one up and one down — that keep the budget, by the same
/// end-to-end error the beam uses (MSE of the final samples against the cached full-precision ones, same noise),
/// and accepts the best move that lowers it. It stops when a round that evaluated every feasible move finds none
/// that helps, or after the given number of rounds.
/// </summary>
/// <remarks>
/// <para>A move only changes stages from its first changed stage on, so the incumbent's samples at every stage
/// boundary are cached and each move runs from there. All moves of a round run in lockstep over the stages: at
/// each stage the moves that use the same configuration there share one batched model call (up to
/// <see cref="BitWidthSearchOptions.MaxBatch"/> samples).</para>
/// <para>Batching sums float32 values in another order than a run on its own, so the best moves of a round (up to
/// three whose batched error is within 10⁻⁵ of the incumbent's or below) are re-run on their own from the cached
/// samples, exactly as the incumbent was, and a move is accepted only when that run's error is strictly lower.
/// The reported errors are therefore those of lone runs, comparable with each other and with a lone run of any
/// other policy on the same trajectories.</para>
/// <para>With <see cref="BitWidthSearchOptions.RefinementMovesPerRound"/> a round evaluates a uniform sample of
/// that many feasible moves (reservoir sampling with a generator seeded by
/// <see cref="BitWidthSearchOptions.RefinementSeed"/>); otherwise every feasible move.</para>
/// <para>It is a local search: when it converges, no feasible move of the neighbourhood improves the policy, which is
/// the global optimum only if a chain of strictly improving moves leads there (not when every path to it passes a
/// worse policy, e.g. when several cells must change together). With <see cref="RefinementNeighbourhood.WithinStage"/>
/// at a budget the start already spends, no single move up fits and bits move between stages only by moves down.</para>
/// </remarks>
internal sealed class PolicyRefinement
{
    private const int LoneRechecks = 3;
    private const double BatchTolerance = 1e-5;

    private readonly StageRunner _runner;
    private readonly SearchCost _cost;
    private readonly BitWidthSearchOptions _options;
    private readonly IReadOnlyList<string> _layers;
    private readonly IReadOnlyList<int> _widths;
    private readonly int[] _stageSteps;
    private readonly int[] _stageStart;
    private readonly IReadOnlyList<Tensor> _fp;
    private readonly ILogger _logger;

    /// <summary>The refined policy: bits per stage and layer, its final samples (owned by the caller; null when no move was accepted), its stage errors and the report.</summary>
    public sealed record Outcome(IReadOnlyList<IReadOnlyList<int>> Bits, Tensor? Final, IReadOnlyList<double> StageErrors, RefinementReport Report);

    private readonly record struct Change(int Stage, int Layer, int From, int To);

    private sealed record Move(IReadOnlyList<Change> Changes)
    {
        public int FirstStage => Changes.Min(c => c.Stage);
    }

    /// <param name="runner">Runs stages (and counts the calls).</param>
    /// <param name="cost">The budget's measure.</param>
    /// <param name="options">The search options (budget, refinement options, batch size).</param>
    /// <param name="layers">Layer names, in the policies' order.</param>
    /// <param name="widths">The weight bit-widths, ascending.</param>
    /// <param name="stageSteps">Steps of every stage.</param>
    /// <param name="fp">The full-precision trajectory: <c>fp[s]</c> = the samples after s steps.</param>
    /// <param name="logger">Logs each accepted move.</param>
    public PolicyRefinement(StageRunner runner, SearchCost cost, BitWidthSearchOptions options, IReadOnlyList<string> layers,
        IReadOnlyList<int> widths, IReadOnlyList<int> stageSteps, IReadOnlyList<Tensor> fp, ILogger logger)
    {
        _runner = runner;
        _cost = cost;
        _options = options;
        _layers = layers;
        _widths = widths;
        _stageSteps = stageSteps.ToArray();
        _stageStart = new int[_stageSteps.Length];
        for (int g = 1; g < _stageSteps.Length; g++) _stageStart[g] = _stageStart[g - 1] + _stageSteps[g - 1];
        _fp = fp;
        _logger = logger;
    }

    private int Stages => _stageSteps.Length;

    /// <summary>Refines <paramref name="start"/> (weight bits per stage and layer; it must meet the budget).</summary>
    public Outcome Run(IReadOnlyList<IReadOnlyList<int>> start, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        var watch = Stopwatch.StartNew();
        long calls0 = _runner.Evaluations;
        var bits = start.Select(b => b.ToArray()).ToArray();
        // states[g] = the incumbent's samples before stage g; states[0] is the trajectories' noise (not owned).
        var states = new Tensor?[Stages + 1];
        states[0] = _runner.Trajectories.Noise;
        try
        {
            double mse = RunAlone(bits, 0, states, cancellationToken);
            double startMse = mse;
            var accepted = new List<IReadOnlyList<RefinementMove>>();
            var random = new Random(unchecked((int)(_options.RefinementSeed ^ (_options.RefinementSeed >> 32))));
            int rounds = 0, evaluated = 0;
            bool converged = false;
            for (int r = 0; r < _options.RefinementRounds; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                rounds++;
                var (moves, complete) = Draw(Enumerate(bits), random);
                if (moves.Count == 0)
                {
                    converged = complete;
                    break;
                }
                var errors = EvaluateBatched(bits, moves, states, cancellationToken);
                evaluated += moves.Count;
                var promising = Enumerable.Range(0, moves.Count)
                    .Where(i => errors[i] < mse * (1 + BatchTolerance))
                    .OrderBy(i => errors[i]).ThenBy(i => i).Take(LoneRechecks).ToList();
                bool improved = false;
                foreach (int i in promising)
                {
                    var trial = Apply(bits, moves[i]);
                    int g0 = moves[i].FirstStage;
                    var trialStates = new Tensor?[Stages + 1];
                    for (int g = 0; g <= g0; g++) trialStates[g] = states[g];
                    double trialMse;
                    try
                    {
                        trialMse = RunAlone(trial, g0, trialStates, cancellationToken);
                    }
                    catch
                    {
                        for (int g = g0 + 1; g <= Stages; g++) trialStates[g]?.Dispose();
                        throw;
                    }
                    if (trialMse < mse)
                    {
                        for (int g = g0 + 1; g <= Stages; g++) { states[g]?.Dispose(); states[g] = trialStates[g]; }
                        accepted.Add(moves[i].Changes.Select(c => new RefinementMove(c.Stage, _layers[c.Layer], c.From, c.To)).ToList());
                        _logger.LogInformation("Refinement round {Round}: {Move} lowers the final MSE {Before:E4} → {After:E4}",
                            r + 1, string.Join(" + ", accepted[^1]), mse, trialMse);
                        bits = trial;
                        mse = trialMse;
                        improved = true;
                        break;
                    }
                    for (int g = g0 + 1; g <= Stages; g++) trialStates[g]?.Dispose();
                }
                progress?.Report(new QuantizationProgress("search refine", r + 1, _options.RefinementRounds, $"{accepted.Count} moves accepted"));
                if (!improved && complete)
                {
                    converged = true;
                    break;
                }
            }
            var stageErrors = Enumerable.Range(0, Stages).Select(g => ImageMetrics.Mse(states[g + 1]!, _fp[_stageStart[g] + _stageSteps[g]])).ToList();
            Tensor? final = null;
            if (accepted.Count > 0)
            {
                final = states[Stages];
                states[Stages] = null;
            }
            var report = new RefinementReport(rounds, evaluated, accepted, startMse, mse, converged, _runner.Evaluations - calls0, watch.Elapsed);
            _logger.LogInformation("Refinement: {Rounds} rounds, {Moves} moves evaluated, {Accepted} accepted; final MSE {Start:E4} → {Final:E4}{Converged}",
                rounds, evaluated, accepted.Count, startMse, mse, converged ? " (local optimum)" : "");
            return new Outcome(bits, final, stageErrors, report);
        }
        finally
        {
            for (int g = 1; g <= Stages; g++) states[g]?.Dispose();
        }
    }

    /// <summary>Runs <paramref name="bits"/> on its own from <c>states[from]</c>, filling <c>states[from+1…]</c>; returns the final MSE.</summary>
    private double RunAlone(int[][] bits, int from, Tensor?[] states, CancellationToken cancellationToken)
    {
        for (int g = from; g < Stages; g++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _runner.Assign(bits[g]);
            states[g + 1] = _runner.Run([states[g]!], _stageStart[g], _stageSteps[g])[0];
        }
        return ImageMetrics.Mse(states[Stages]!, _fp[^1]);
    }

    /// <summary>The final MSE of every move, all run in lockstep from the incumbent's cached samples.</summary>
    private double[] EvaluateBatched(int[][] bits, IReadOnlyList<Move> moves, Tensor?[] states, CancellationToken cancellationToken)
    {
        var x = new Tensor?[moves.Count];
        try
        {
            int first = moves.Min(m => m.FirstStage);
            for (int g = first; g < Stages; g++)
            {
                var groups = Enumerable.Range(0, moves.Count).Where(m => moves[m].FirstStage <= g)
                    .Select(m => (Move: m, Bits: StageBits(bits, moves[m], g)))
                    .GroupBy(p => string.Join(",", p.Bits));
                foreach (var group in groups)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var members = group.ToList();
                    _runner.Assign(members[0].Bits);
                    var outputs = _runner.Run(members.Select(p => x[p.Move] ?? states[g]!).ToList(), _stageStart[g], _stageSteps[g]);
                    for (int j = 0; j < members.Count; j++)
                    {
                        x[members[j].Move]?.Dispose();
                        x[members[j].Move] = outputs[j];
                    }
                }
            }
            return x.Select(t => ImageMetrics.Mse(t!, _fp[^1])).ToArray();
        }
        finally
        {
            foreach (var t in x) t?.Dispose();
        }
    }

    private static int[] StageBits(int[][] bits, Move move, int stage)
    {
        var row = bits[stage];
        if (move.Changes.All(c => c.Stage != stage)) return row;
        row = row.ToArray();
        foreach (var c in move.Changes.Where(c => c.Stage == stage)) row[c.Layer] = c.To;
        return row;
    }

    private static int[][] Apply(int[][] bits, Move move)
    {
        var result = bits.Select(b => b.ToArray()).ToArray();
        foreach (var c in move.Changes) result[c.Stage][c.Layer] = c.To;
        return result;
    }

    /// <summary>Every feasible move of the neighbourhood around <paramref name="bits"/>, in a fixed order.</summary>
    private IEnumerable<Move> Enumerate(int[][] bits)
    {
        int layers = _layers.Count;
        int steps = _stageSteps.Sum();
        double additive = 0;
        var used = new Dictionary<(int Layer, int Bits), int>();
        for (int g = 0; g < Stages; g++)
            for (int l = 0; l < layers; l++)
            {
                additive += _cost.CellCost(l, bits[g][l], _stageSteps[g]);
                used[(l, bits[g][l])] = used.GetValueOrDefault((l, bits[g][l])) + 1;
            }
        bool memory = _cost.Kind == BudgetKind.WeightMemory;

        bool Feasible(Move move)
        {
            double a = additive;
            long b = 0;
            var delta = new Dictionary<(int, int), int>();
            foreach (var c in move.Changes)
            {
                a += _cost.CellCost(c.Layer, c.To, _stageSteps[c.Stage]) - _cost.CellCost(c.Layer, c.From, _stageSteps[c.Stage]);
                delta[(c.Layer, c.From)] = delta.GetValueOrDefault((c.Layer, c.From)) - 1;
                delta[(c.Layer, c.To)] = delta.GetValueOrDefault((c.Layer, c.To)) + 1;
            }
            if (memory)
            {
                // Recounted per move, not updated by differences: a nested version's parent is stored once for all its children.
                var after = used.Keys.Where(k => used[k] + delta.GetValueOrDefault(k) > 0).ToHashSet();
                foreach (var (k, d) in delta) if (used.GetValueOrDefault(k) + d > 0) after.Add(k);
                b = _cost.StoredBytes(after);
            }
            return _cost.Meets(a, b, steps);
        }

        int Step(int from, int direction)
        {
            int i = IndexOf(from) + direction;
            return i >= 0 && i < _widths.Count ? _widths[i] : -1;
        }

        for (int g = 0; g < Stages; g++)
            for (int l = 0; l < layers; l++)
                foreach (int direction in new[] { 1, -1 })
                {
                    int to = Step(bits[g][l], direction);
                    if (to < 0) continue;
                    var move = new Move([new Change(g, l, bits[g][l], to)]);
                    if (Feasible(move)) yield return move;
                }
        bool across = _options.RefinementNeighbourhood == RefinementNeighbourhood.AcrossStages;
        for (int g1 = 0; g1 < Stages; g1++)
            for (int l1 = 0; l1 < layers; l1++)
            {
                int up = Step(bits[g1][l1], 1);
                if (up < 0) continue;
                for (int g2 = across ? 0 : g1; g2 < (across ? Stages : g1 + 1); g2++)
                    for (int l2 = 0; l2 < layers; l2++)
                    {
                        int down = Step(bits[g2][l2], -1);
                        if ((g2 == g1 && l2 == l1) || down < 0) continue;
                        var move = new Move([new Change(g1, l1, bits[g1][l1], up), new Change(g2, l2, bits[g2][l2], down)]);
                        if (Feasible(move)) yield return move;
                    }
            }
    }

    private int IndexOf(int bits)
    {
        for (int i = 0; i < _widths.Count; i++)
            if (_widths[i] == bits) return i;
        throw new InvalidOperationException($"W{bits} is not a width of the search ({string.Join("/", _widths)}).");
    }

    /// <summary>All moves, or a seeded uniform sample of <see cref="BitWidthSearchOptions.RefinementMovesPerRound"/> of them (in enumeration order); and whether that is all of them.</summary>
    private (List<Move> Moves, bool Complete) Draw(IEnumerable<Move> moves, Random random)
    {
        if (_options.RefinementMovesPerRound is not { } k) return (moves.ToList(), true);
        var reservoir = new List<(int Index, Move Move)>(k);
        int seen = 0;
        foreach (var move in moves)
        {
            if (reservoir.Count < k) reservoir.Add((seen, move));
            else
            {
                int j = random.Next(seen + 1);
                if (j < k) reservoir[j] = (seen, move);
            }
            seen++;
        }
        return (reservoir.OrderBy(p => p.Index).Select(p => p.Move).ToList(), seen <= k);
    }
}
