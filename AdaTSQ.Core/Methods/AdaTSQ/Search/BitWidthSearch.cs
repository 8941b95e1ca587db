using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// AdaTSQ's Pareto-aware timestep-dynamic bit-width allocation (arXiv 2602.09883): a beam search over the
/// sampling steps that gives every layer a weight bit-width at every step, scored by the end-to-end
/// reconstruction error of the denoising trajectory.
/// </summary>
/// <remarks>
/// <para>Stages are the sampling steps (or groups of <see cref="BitWidthSearchOptions.StepsPerStage"/>)
/// from the first (noisiest) to the last. A path assigns one candidate (<see cref="CandidateGenerator"/>)
/// to every stage done so far and carries its samples. Extending a path by a candidate runs the quantized
/// model through the stage from the path's samples; its error is the MSE against the cached full-precision
/// trajectory (same noise) at the end of the stage — after the last stage, the error of the final images.
/// All paths are extended by one candidate in one batch (up to <see cref="BitWidthSearchOptions.MaxBatch"/>
/// samples per call).</para>
/// <para>Pruning: children that can no longer meet the budget (cost so far + the cheapest candidates of the
/// remaining stages) are dropped; of the rest, only the Pareto-optimal ones on (error, cost so far) are
/// kept, at most <see cref="BitWidthSearchOptions.BeamWidth"/> of them: the most accurate path that is on
/// pace (cost so far ≤ budget × steps done, so a policy that spends the budget evenly is never crowded out by
/// paths that spend early and must starve later) and the others spread evenly along the front
/// (<see cref="ParetoFront.Spread"/>). The complete paths form the frontier; the best is the one with the
/// lowest final error.</para>
/// <para>Refinement (off by default, <see cref="BitWidthSearchOptions.RefinementRounds"/>): the beam chooses only
/// among the few layer-wise candidates per stage, so per-layer bits are set by the sensitivity's knapsack, not by the
/// end-to-end error. A local search (<see cref="PolicyRefinement"/>) then moves single layers (or an up/down pair of
/// layers) one width at a stage, keeping the budget, and accepts the moves that lower the same end-to-end error;
/// the refined policy becomes <see cref="BitWidthSearchResult.Best"/>.</para>
/// <para>Held-out selection (optional <c>heldOut</c> trajectories): the beam and the refinement fit the search
/// trajectories, which can overfit them (few trajectories, many configurations). With held-out trajectories (other noise,
/// same model and sampler) every complete frontier policy, the refined policy and the static references are also run on
/// them, and the search returns the policy with the lowest held-out final error: the frontier's best by held-out error,
/// replaced by the refined policy only if that is at least as good on the held-out set too.</para>
/// <para>The layers must already hold a weight version for every config of the search space (quantize them
/// with a <see cref="SearchSpacePolicy"/>: each bit-width once, e.g. GPTQ with Fisher weighting, reused by
/// every path). Their policies are restored when the search ends.</para>
/// </remarks>
public sealed class BitWidthSearch
{
    private readonly IReadOnlyList<QuantLinear> _layers;
    private readonly SearchTrajectories _trajectories;
    private readonly SearchTrajectories? _heldOut;
    private readonly LayerSensitivity _sensitivity;
    private readonly ILogger _logger;

    /// <summary>Creates the search.</summary>
    /// <param name="layers">The searched layers, each holding a weight version for every config of the search space.</param>
    /// <param name="trajectories">The search trajectories: every path is scored on them.</param>
    /// <param name="options">The search's options.</param>
    /// <param name="sensitivity">The layer sensitivity that ranks the layers' candidates (default: from the layers' reports).</param>
    /// <param name="logger">Logger (default: none).</param>
    /// <param name="heldOut">
    /// Optional held-out trajectories (other noise, the same model and sampler): the final policy is selected by its error on
    /// them (<see cref="FrontierPoint.HeldOutMse"/>), not on the search trajectories.
    /// </param>
    /// <exception cref="QuantizationConfigurationException">Invalid options, or a layer lacks a weight version of the search space, or the held-out sampler has another number of steps.</exception>
    public BitWidthSearch(IReadOnlyList<QuantLinear> layers, SearchTrajectories trajectories, BitWidthSearchOptions options, LayerSensitivity? sensitivity = null, ILogger? logger = null,
        SearchTrajectories? heldOut = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        _trajectories = trajectories ?? throw new ArgumentNullException(nameof(trajectories));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        var problems = options.FindProblems().ToList();
        if (layers.Count == 0) problems.Add("no layers to search.");
        if (problems.Count == 0)
            foreach (var layer in layers)
                foreach (int b in options.SearchedBits.Distinct())
                    if (options.ConfigFor(b).Weight is { IsEnabled: true } spec && !layer.HasWeightVersion(spec))
                        problems.Add($"layer '{layer.LayerName}' holds no weight version for {spec} (W{b}): quantize it with a SearchSpacePolicy first.");
        if (heldOut is not null && heldOut.Sampler.StepCount != trajectories.Sampler.StepCount)
            problems.Add($"the held-out trajectories' sampler has {heldOut.Sampler.StepCount} steps, the search trajectories' {trajectories.Sampler.StepCount}: use the same sampler.");
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _layers = layers;
        _heldOut = heldOut;
        _sensitivity = sensitivity ?? (options.Axis == SearchAxis.ActivationBits
            ? LayerSensitivity.FromActivationError(layers, options, trajectories)
            : LayerSensitivity.FromLayers(layers, options));
        if (!_sensitivity.Layers.SequenceEqual(layers.Select(l => l.LayerName)) || !_sensitivity.Bits.SequenceEqual(options.SearchedBits.Distinct().Order()))
            throw new QuantizationConfigurationException(["the layer sensitivity was made for other layers or bit-widths than the search's."]);
        if (_sensitivity.WeightedSteps > 0 && _sensitivity.WeightedSteps != trajectories.Sampler.StepCount)
            throw new QuantizationConfigurationException([$"the layer sensitivity has Fisher weights for {_sensitivity.WeightedSteps} steps, but the sampler has {trajectories.Sampler.StepCount}: estimate the Fisher with the sampler's own schedule."]);
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>The options.</summary>
    public BitWidthSearchOptions Options { get; }

    /// <summary>Runs (or, with a saved state, resumes) the search.</summary>
    /// <exception cref="BudgetException">No policy of the search space meets the budget (raised before any model call).</exception>
    /// <exception cref="SearchStateException">The saved state is unreadable or from another search.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; with a state path, the last finished stage is saved.</exception>
    public BitWidthSearchResult Run(IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var watch = Stopwatch.StartNew();
        var names = _layers.Select(l => l.LayerName).ToList();
        var policy = new SearchSpacePolicy(names, Options);
        var previous = _layers.Select(l => l.Policy).ToArray();
        var fp = new List<Tensor>();
        var beam = new List<SearchPath>();
        try
        {
            foreach (var layer in _layers) layer.Policy = policy;
            var sampler = _trajectories.Sampler;
            int steps = sampler.StepCount, per = Options.StepsPerStage, stages = (steps + per - 1) / per;
            var cost = SearchCost.Measure(_layers, _trajectories, policy, Options);
            var runner = new StageRunner(_trajectories, policy, Options);
            var candidates = Enumerable.Range(0, stages)
                .Select(g => CandidateGenerator.Generate(_sensitivity, cost.Parameters, _sensitivity.StageWeights(g * per, Math.Min(steps, (g + 1) * per) - 1), Options.Levels()))
                .ToList();
            var stageSteps = Enumerable.Range(0, stages).Select(g => Math.Min(steps, (g + 1) * per) - g * per).ToArray();
            var suffix = new double[stages + 1];
            for (int g = stages - 1; g >= 0; g--) suffix[g] = suffix[g + 1] + candidates[g].Min(c => cost.StageCost(c, stageSteps[g]));
            CheckBudget(cost, candidates, suffix[0], steps);

            using (torch.no_grad())
            {
                // The full-precision trajectory, computed once: every path is compared with it.
                policy.Assign(Enumerable.Repeat(LayerQuantConfig.FullPrecision, names.Count).ToList());
                fp.Add(_trajectories.Noise.alias().DetachFromDisposeScope());
                for (int s = 0; s < steps; s++)
                {
                    fp.Add(sampler.Step(_trajectories.Model, fp[^1], _trajectories.Labels, s).DetachFromDisposeScope());
                    runner.Evaluations++;
                    runner.SampleEvaluations += _trajectories.Count;
                }
            }
            string fingerprint = SearchState.Fingerprint(Options, names, candidates, _trajectories, steps);
            var state = Options.StatePath is { } path ? SearchState.TryLoad(path, fingerprint, _trajectories.Noise.device) : null;
            int start = 0;
            TimeSpan earlier = TimeSpan.Zero;
            if (state is not null)
            {
                beam.AddRange(state.Paths);
                start = state.CompletedStages;
                runner.Evaluations += state.Evaluations;
                runner.SampleEvaluations += state.SampleEvaluations;
                earlier = state.Elapsed;
                _logger.LogInformation("Resuming the bit-width search from {Path}: {Done} of {Stages} stages done, {Paths} paths", Options.StatePath, start, stages, beam.Count);
            }
            else beam.Add(new SearchPath([], 0, new HashSet<long>(), _trajectories.Noise.alias().DetachFromDisposeScope(), []));

            for (int g = start; g < stages; g++)
            {
                var children = new List<SearchPath>();
                try
                {
                    for (int c = 0; c < candidates[g].Count; c++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        runner.Assign(candidates[g][c].Bits);
                        var outputs = runner.Run(beam.Select(p => p.X).ToList(), g * per, stageSteps[g]);
                        for (int i = 0; i < beam.Count; i++)
                        {
                            var p = beam[i];
                            double error = ImageMetrics.Mse(outputs[i], fp[g * per + stageSteps[g]]);
                            var used = cost.Kind == BudgetKind.WeightMemory ? p.Used.Union(candidates[g][c].Bits.Select((b, l) => SearchCost.Key(l, b))).ToHashSet() : p.Used;
                            children.Add(new SearchPath([.. p.Choices, c], p.Additive + cost.StageCost(candidates[g][c], stageSteps[g]), used, outputs[i], [.. p.Errors, error]));
                        }
                    }
                    var feasible = children.Where(ch => cost.Feasible(ch, suffix[g + 1], steps)).ToList();
                    var front = ParetoFront.NonDominated(feasible.Select(ch => (ch.Errors[^1], cost.PathCost(ch))).ToList());
                    var kept = Select(front, feasible, cost, stageSteps.Take(g + 1).Sum(), steps).ToList();
                    foreach (var ch in children.Except(kept)) ch.X.Dispose();
                    children.Clear();
                    foreach (var p in beam) p.X.Dispose();
                    beam.Clear();
                    beam.AddRange(kept);
                }
                finally
                {
                    foreach (var ch in children) ch.X.Dispose();
                }
                _logger.LogDebug("Stage {Stage}/{Stages}: {Candidates} candidates, {Paths} paths kept, errors {Min:E2}…{Max:E2}",
                    g + 1, stages, candidates[g].Count, beam.Count, beam.Min(p => p.Errors[^1]), beam.Max(p => p.Errors[^1]));
                if (Options.StatePath is { } statePath)
                    SearchState.Save(statePath, fingerprint, g + 1, beam, runner.Evaluations, runner.SampleEvaluations, earlier + watch.Elapsed);
                progress?.Report(new QuantizationProgress("search", g + 1, stages, $"{beam.Count} paths"));
            }

            var ordered = beam.OrderBy(cost.PathCost).ToList();
            var frontier = ordered.Select(p => Point("dynamic", p.Choices.Select((c, g) => candidates[g][c]).ToList(), p.X, fp[^1], p.Errors, cost)).ToList();
            using var heldOut = _heldOut is null ? null : HeldOutRunner.Start(_heldOut, policy, Options, names.Count, stageSteps, cancellationToken);
            if (heldOut is not null)
            {
                for (int i = 0; i < frontier.Count; i++)
                    frontier[i] = heldOut.Score(frontier[i], ordered[i].Choices.Select((c, g) => (IReadOnlyList<int>)candidates[g][c].Bits).ToList(), cancellationToken);
                progress?.Report(new QuantizationProgress("search held-out", frontier.Count, frontier.Count));
            }
            var beamBest = frontier.MinBy(p => p.SelectionMse)!;
            var best = beamBest;
            FrontierPoint? refined = null;
            RefinementReport? refinement = null;
            if (Options.RefinementRounds > 0)
            {
                var bestPath = ordered[frontier.IndexOf(beamBest)];
                var start1 = bestPath.Choices.Select((c, g) => (IReadOnlyList<int>)candidates[g][c].Bits).ToList();
                var refiner = new PolicyRefinement(runner, cost, Options, names, _sensitivity.Bits, stageSteps, fp, _logger);
                var outcome = refiner.Run(start1, progress, cancellationToken);
                refinement = outcome.Report;
                if (outcome.Final is { } final)
                {
                    var choices = outcome.Bits.Select(b => { double avg = cost.AverageBits(b); return new BitCandidate(avg, b, avg); }).ToList();
                    using (final) refined = Point("dynamic refined", choices, final, fp[^1], outcome.StageErrors, cost);
                    if (heldOut is not null) refined = heldOut.Score(refined, outcome.Bits.ToList(), cancellationToken);
                    // On held-out trajectories the refinement must not be worse than the beam's pick (it fits the search set).
                    if (refined.SelectionMse <= beamBest.SelectionMse) best = refined;
                    else _logger.LogInformation("The refined policy is worse on the held-out trajectories ({Refined:E3} vs {Beam:E3}): keeping the beam's pick", refined.HeldOutMse, beamBest.HeldOutMse);
                }
            }
            var statics = new List<FrontierPoint>();
            if (Options.EvaluateStaticReferences)
            {
                var references = CandidateGenerator.Generate(_sensitivity, cost.Parameters, Enumerable.Repeat(1.0, names.Count).ToList(), Options.Levels()).ToList();
                foreach (int b in _sensitivity.Bits)
                {
                    var uniform = new BitCandidate(b, Enumerable.Repeat(b, names.Count).ToList(), b);
                    if (!references.Any(r => r.SameBits(uniform))) references.Add(uniform);
                }
                foreach (var reference in references.OrderBy(r => r.AverageWeightBits))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    runner.Assign(reference.Bits);
                    var x = runner.Run([_trajectories.Noise], 0, steps)[0];
                    FrontierPoint point;
                    using (x) point = Point($"static {reference.Format(Options.Axis == SearchAxis.ActivationBits ? "A" : "W")}", Enumerable.Repeat(reference, stages).ToList(), x, fp[^1], [], cost);
                    if (heldOut is not null) point = heldOut.Score(point, Enumerable.Repeat((IReadOnlyList<int>)reference.Bits, stages).ToList(), cancellationToken);
                    statics.Add(point);
                    progress?.Report(new QuantizationProgress("search statics", statics.Count, references.Count));
                }
            }
            if (heldOut is not null)
            {
                runner.Evaluations += heldOut.Runner.Evaluations;
                runner.SampleEvaluations += heldOut.Runner.SampleEvaluations;
            }
            var result = new BitWidthSearchResult(Options, names, cost.Parameters, steps, frontier, best, statics, runner.Evaluations, runner.SampleEvaluations, earlier + watch.Elapsed, start,
                beamBest, refinement, refined, _heldOut?.Count ?? 0);
            _logger.LogInformation("Bit-width search done in {Seconds:F1} s ({Calls} model calls): best {Bits:F3} avg weight bits, final PSNR {Psnr:F2} dB; {Points} frontier points",
                result.WallTime.TotalSeconds, runner.Evaluations, best.AverageWeightBits, best.FinalPsnr, frontier.Count);
            return result;
        }
        finally
        {
            for (int i = 0; i < _layers.Count; i++) _layers[i].Policy = previous[i];
            foreach (var t in fp) t.Dispose();
            foreach (var p in beam) p.X.Dispose();
        }
    }

    /// <summary>
    /// The paths kept from a Pareto front (ordered by cost): the most accurate path that is on pace (its cost so
    /// far within the budget's share of the steps done), so that a policy spending the budget evenly always
    /// survives, and K − 1 (K without an additive budget) spread evenly along the front.
    /// </summary>
    private IEnumerable<SearchPath> Select(IReadOnlyList<int> front, List<SearchPath> paths, SearchCost cost, int stepsDone, int steps)
    {
        if (front.Count <= Options.BeamWidth) return front.Select(i => paths[i]);
        if (cost.Kind == BudgetKind.WeightMemory || Options.BeamWidth == 1) return ParetoFront.Spread(front, Options.BeamWidth).Select(i => paths[i]);
        double pace = Options.Budget.Value * stepsDone * (1 + 1e-12);
        int onPace = front.LastOrDefault(i => cost.PathCost(paths[i]) <= pace, -1);
        var spread = ParetoFront.Spread(front, Options.BeamWidth - (onPace >= 0 ? 1 : 0)).ToList();
        if (onPace >= 0 && !spread.Contains(onPace)) spread.Add(onPace);
        return front.Where(spread.Contains).Select(i => paths[i]);
    }

    private void CheckBudget(SearchCost cost, List<IReadOnlyList<BitCandidate>> candidates, double cheapest, int steps)
    {
        var budget = Options.Budget;
        if (cost.Kind == BudgetKind.WeightMemory)
        {
            long least = candidates.Max(list => list.Min(c => cost.Bytes(c)));
            if (least > budget.Value)
                throw new BudgetException($"budget {budget} cannot be met: the cheapest candidate alone keeps {least:N0} bytes of weights.");
            return;
        }
        if (cheapest / steps > budget.Value * (1 + 1e-12))
            throw new BudgetException($"budget {budget} cannot be met: the cheapest policy of the search space (every step at its cheapest candidate) costs {cheapest / steps:G6}. Raise the budget or add lower bit-widths.");
    }

    private FrontierPoint Point(string label, IReadOnlyList<BitCandidate> choices, Tensor final, Tensor fpFinal, IReadOnlyList<double> errors, SearchCost cost)
    {
        int steps = _trajectories.Sampler.StepCount, per = Options.StepsPerStage;
        var rows = Enumerable.Range(0, steps).Select(s => (IReadOnlyList<LayerQuantConfig>)choices[s / per].Bits.Select(Options.ConfigFor).ToList()).ToList();
        var policy = new DynamicTimestepPolicy(_layers.Select(l => l.LayerName).ToList(), rows, name: label);
        var stepBits = Enumerable.Range(0, steps).Select(s => choices[s / per].AverageWeightBits).ToList();   // of the searched bits
        double bops = Enumerable.Range(0, steps).Average(s => cost.Bops(choices[s / per]));
        long bytes = cost.Bytes(choices);
        if (Options.Axis == SearchAxis.ActivationBits)
        {
            // The searched bits are activation bits; the weights keep one version per layer.
            double weightBits = Enumerable.Range(0, _layers.Count).Sum(l => (double)cost.Parameters[l] * Options.ConfigFor(choices[0].Bits[l]).WeightBits) / cost.Parameters.Sum(n => (double)n);
            return new FrontierPoint(label, policy, weightBits, bops, bytes, ImageMetrics.Mse(final, fpFinal), ImageMetrics.Psnr(final, fpFinal), errors, stepBits,
                AverageActivationBits: stepBits.Average());
        }
        return new FrontierPoint(label, policy, stepBits.Average(), bops, bytes, ImageMetrics.Mse(final, fpFinal), ImageMetrics.Psnr(final, fpFinal), errors, stepBits);
    }
}
