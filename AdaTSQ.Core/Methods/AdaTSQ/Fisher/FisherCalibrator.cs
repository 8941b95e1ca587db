using AdaTSQ.Abstractions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using AdaTSQ.Calibration;

namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// AdaTSQ's Fisher-guided temporal calibration (arXiv 2602.09883): the calibration data of each
/// sampling step count by that step's temporal Fisher weight α_{t,l}, so that the Hessian a GPTQ-style
/// quantizer sees is <c>H'_l = Σ_t α_{t,l} X_{t,l} X_{t,l}ᵀ</c> (<see cref="FisherUse.Weight"/>), and/or
/// the steps that fill a fixed calibration budget are drawn by Fisher importance
/// (<see cref="FisherUse.Sample"/>). The Fisher values come precomputed or from a
/// <see cref="TemporalFisherEstimator"/> run on the (still full-precision) layers when calibration starts.
/// </summary>
public sealed class FisherCalibrator : ICalibrator, IPreparingCalibrator
{
    private readonly TemporalFisherEstimator? _estimator;
    private readonly ILogger _logger;

    /// <summary>A calibrator that estimates the Fisher values itself when it calibrates.</summary>
    public FisherCalibrator(TemporalFisherEstimator estimator, FisherCalibrationOptions? options = null, ILogger? logger = null)
        : this(options, logger)
    {
        _estimator = estimator ?? throw new ArgumentNullException(nameof(estimator));
    }

    /// <summary>A calibrator using precomputed Fisher values.</summary>
    public FisherCalibrator(TemporalFisher fisher, FisherCalibrationOptions? options = null, ILogger? logger = null)
        : this(options, logger)
    {
        Fisher = fisher ?? throw new ArgumentNullException(nameof(fisher));
    }

    private FisherCalibrator(FisherCalibrationOptions? options, ILogger? logger)
    {
        Options = options ?? new FisherCalibrationOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new CalibrationException("invalid Fisher calibration: " + string.Join(" ", problems));
        _logger = logger ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public string Name => "fisher";

    /// <summary>The options in use.</summary>
    public FisherCalibrationOptions Options { get; }

    /// <summary>The Fisher values used (after <see cref="Calibrate"/> when they are estimated).</summary>
    public TemporalFisher? Fisher { get; private set; }

    /// <summary>The step weights α of each layer used by the last calibration.</summary>
    public IReadOnlyDictionary<string, double[]>? StepWeights { get; private set; }

    /// <summary>The steps drawn by the last calibration and how often (null for <see cref="FisherUse.Weight"/>).</summary>
    public IReadOnlyDictionary<int, int>? DrawnSteps { get; private set; }

    /// <inheritdoc />
    public CalibrationResult Calibrate(IReadOnlyList<IQuantizableLayer> layers, ICalibrationSource source, CalibrationRequirements requirements,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (Fisher is null) Prepare(layers, progress, cancellationToken);
        var fisher = Fisher!;
        var weights = fisher.Weights(Options.Weighting);
        var missing = layers.Where(l => !weights.ContainsKey(l.LayerName)).Select(l => l.LayerName).ToList();
        if (missing.Count > 0)
            throw new CalibrationException($"the temporal Fisher values have no entry for {missing.Count} layer(s): {string.Join(", ", missing.Take(8))}.");
        int steps = fisher.Steps.Count;
        IReadOnlyDictionary<int, int>? drawn = null;
        if (Options.Use != FisherUse.Weight)
        {
            int budget = Math.Max(1, (int)Math.Round(Options.StepFraction * steps));
            drawn = DrawSteps((Options.Weighting with { PerLayer = false }).Normalize(fisher.StepTotals()), budget, Options.Seed);
            _logger.LogInformation("Fisher importance sampling: {Budget} draws over {Steps} steps → steps {Drawn}", budget, steps,
                string.Join(", ", drawn.OrderBy(p => p.Key).Select(p => p.Value > 1 ? $"{p.Key}×{p.Value}" : $"{p.Key}")));
        }
        StepWeights = weights;
        DrawnSteps = drawn;
        var byLayer = layers.ToDictionary(l => l, l => weights[l.LayerName]);
        double Weight(IQuantizableLayer layer, TimestepInfo? step)
        {
            if (step is not { } s)
                throw new CalibrationException($"layer '{layer.LayerName}' was called outside a sampling step: Fisher calibration needs a source that sets the TimestepContext (e.g. TrajectoryCalibrationSource).");
            if (s.StepCount != steps || s.StepIndex >= steps)
                throw new CalibrationException($"calibration ran at {s}, but the Fisher values cover {steps} steps: estimate them with the sampler's own schedule.");
            double alpha = byLayer[layer][s.StepIndex];
            return Options.Use switch
            {
                FisherUse.Weight => alpha,
                FisherUse.Sample => drawn!.GetValueOrDefault(s.StepIndex),
                _ => drawn!.ContainsKey(s.StepIndex) ? alpha : 0,
            };
        }
        return CaptureLoop.Run(layers, source, new LayerStatisticsCollector(layers, requirements, Weight), progress, _logger, cancellationToken);
    }

    /// <summary>
    /// Estimates the Fisher values of <paramref name="layers"/> (all the layers that will be calibrated,
    /// in full precision) unless they were given or estimated already. The pipeline calls this before
    /// calibrating block by block, so that one estimate on the full-precision model serves every block.
    /// </summary>
    public void Prepare(IReadOnlyList<IQuantizableLayer> layers, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        if (Fisher is not null || _estimator is null) return;
        var quantized = layers.Where(l => l.IsQuantized).Select(l => l.LayerName).ToList();
        if (quantized.Count > 0)
            throw new CalibrationException($"the temporal Fisher is estimated on the full-precision model, but {quantized.Count} layer(s) are already quantized: {string.Join(", ", quantized.Take(5))}.");
        Fisher = _estimator.Estimate(layers, progress, cancellationToken);
    }

    /// <summary>
    /// Systematic sampling of <paramref name="draws"/> steps with probability ∝ <paramref name="alpha"/>:
    /// one uniform offset u ∈ [0, 1/draws) (seeded), points u + j/draws on the cumulative distribution.
    /// Returns step → number of draws. A step with weight share p is drawn ⌊p·draws⌋ or ⌈p·draws⌉ times.
    /// </summary>
    public static IReadOnlyDictionary<int, int> DrawSteps(IReadOnlyList<double> alpha, int draws, long seed)
    {
        ArgumentNullException.ThrowIfNull(alpha);
        if (draws <= 0) throw new ArgumentOutOfRangeException(nameof(draws), $"{draws} draws: must be positive.");
        double total = alpha.Sum();
        if (alpha.Count == 0 || !(total > 0) || alpha.Any(a => !(a >= 0))) throw new ArgumentException("step weights must be non-negative with a positive sum.", nameof(alpha));
        double u = new Random(unchecked((int)(seed ^ (seed >> 32)))).NextDouble() / draws;
        var counts = new Dictionary<int, int>();
        double cumulative = 0;
        int step = 0;
        for (int j = 0; j < draws; j++)
        {
            double point = u + (double)j / draws;
            while (step < alpha.Count - 1 && cumulative + alpha[step] / total <= point) cumulative += alpha[step++] / total;
            counts[step] = counts.GetValueOrDefault(step) + 1;
        }
        return counts;
    }
}
