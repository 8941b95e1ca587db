using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Policies;
using AdaTSQ.Search;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Composes a post-training quantization run: which model and layers, which bits, how calibration
/// data is collected and weighted, which quantizer turns weights into integers, and which policy
/// picks bits per timestep. Every method returns the builder, so calls chain;
/// <see cref="Build"/> checks everything at once and returns an immutable
/// <see cref="QuantizationPipeline"/> that <see cref="QuantizationPipeline.Apply"/> runs.
/// </summary>
/// <example>
/// <code>
/// var result = new QuantizationBuilder()
///     .ForModel(model)
///     .Weights(bits: 4, groupSize: 64)
///     .Activations(bits: 8)
///     .CalibrationData(batches)
///     .WithLogger(logger)
///     .Build()
///     .Apply();
/// Console.WriteLine(result.FormatTable());
/// </code>
/// </example>
public sealed class QuantizationBuilder
{
    private readonly List<string> _include = [];
    private readonly List<string> _exclude = [];
    private Func<ILogger?, ICalibrator>? _calibratorFactory;
    private Func<ILogger?, IQuantizer>? _quantizerFactory;

    internal nn.Module? Model { get; private set; }
    internal QuantSpec? WeightSpec { get; private set; }
    internal QuantSpec? ActivationSpec { get; private set; }
    internal ICalibrator? CalibratorInstance { get; private set; }
    internal ICalibrationSource? Source { get; private set; }
    internal IReadOnlyList<Tensor>? SourceInputs { get; private set; }
    internal IQuantizer? QuantizerInstance { get; private set; }
    internal ITimestepPolicy? PolicyInstance { get; private set; }
    internal ILogger? Logger { get; private set; }
    internal IProgress<QuantizationProgress>? Progress { get; private set; }
    internal bool OutputErrorReport { get; private set; } = true;
    internal double? SmoothingAlpha { get; private set; }
    internal int RangeGroups { get; private set; }
    internal BlockwiseCalibration? Blockwise { get; private set; }
    internal (SearchTrajectories Trajectories, BitWidthSearchOptions Options)? Search { get; private set; }

    /// <summary>The model to quantize (any TorchSharp module tree with linear layers). Required.</summary>
    public QuantizationBuilder ForModel(nn.Module model)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        return this;
    }

    /// <summary>Quantize only the linear layers whose dotted names match one of these globs (default: all).</summary>
    public QuantizationBuilder Layers(params string[] patterns)
    {
        _include.AddRange(patterns);
        return this;
    }

    /// <summary>Leave the linear layers whose names match one of these globs in full precision.</summary>
    public QuantizationBuilder ExcludeLayers(params string[] patterns)
    {
        _exclude.AddRange(patterns);
        return this;
    }

    /// <summary>Weight bits for every selected layer: per output channel, or per group of <paramref name="groupSize"/> inputs.</summary>
    public QuantizationBuilder Weights(int bits, int groupSize = 0, bool symmetric = true, double clipRatio = 1.0) =>
        Weights(QuantSpec.Weight(bits, groupSize, symmetric, clipRatio));

    /// <summary>Weight quantization for every selected layer.</summary>
    public QuantizationBuilder Weights(QuantSpec spec)
    {
        WeightSpec = spec ?? throw new ArgumentNullException(nameof(spec));
        return this;
    }

    /// <summary>Activation bits: dynamic per-token (default) or static per-tensor from calibration. Default: none (16).</summary>
    public QuantizationBuilder Activations(int bits, bool dynamic = true, bool symmetric = true, double clipRatio = 1.0) =>
        Activations(QuantSpec.Activation(bits, dynamic, symmetric, clipRatio));

    /// <summary>Activation quantization for every selected layer.</summary>
    public QuantizationBuilder Activations(QuantSpec spec)
    {
        ActivationSpec = spec ?? throw new ArgumentNullException(nameof(spec));
        return this;
    }

    /// <summary>How calibration statistics are collected (default: <see cref="UniformCalibrator"/> when there is data).</summary>
    public QuantizationBuilder Calibrator(ICalibrator calibrator)
    {
        CalibratorInstance = calibrator ?? throw new ArgumentNullException(nameof(calibrator));
        _calibratorFactory = null;
        return this;
    }

    /// <summary>
    /// AdaTSQ's Fisher-guided temporal calibration: the temporal Fisher of the (full-precision) layers
    /// is estimated by <paramref name="estimator"/> when calibration starts, and each step's calibration
    /// data are weighted (and/or drawn) by it (see <see cref="FisherCalibrator"/>). Needs a calibration
    /// source that runs the sampler's steps, e.g. <see cref="TrajectoryCalibrationSource"/>.
    /// </summary>
    public QuantizationBuilder UseFisherCalibration(TemporalFisherEstimator estimator, FisherCalibrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(estimator);
        _calibratorFactory = logger => new FisherCalibrator(estimator, options, logger);
        CalibratorInstance = null;
        return this;
    }

    /// <summary>Fisher-guided temporal calibration with Fisher values estimated beforehand.</summary>
    public QuantizationBuilder UseFisherCalibration(TemporalFisher fisher, FisherCalibrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(fisher);
        _calibratorFactory = logger => new FisherCalibrator(fisher, options, logger);
        CalibratorInstance = null;
        return this;
    }

    /// <summary>
    /// Hessian-based weight optimization: GPTQ with <paramref name="options"/> quantizes every weight
    /// against its (temporally weighted, when Fisher calibration is used) input Hessian.
    /// Needs calibration data.
    /// </summary>
    public QuantizationBuilder UseHessianOptimization(GptqOptions? options = null)
    {
        var o = options ?? new GptqOptions();
        var problems = o.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _quantizerFactory = logger => new GptqQuantizer(o, logger);
        QuantizerInstance = null;
        return this;
    }

    /// <summary>
    /// SmoothQuant: before quantization each layer's inputs are divided per channel by
    /// <c>s_j = max|X_j|^α / max|W_j|^(1−α)</c> (from calibration) and its weight columns multiplied by
    /// them, moving activation outliers into the weights. The factors are kept as a per-channel input
    /// scale in the quantized layer (one elementwise multiply per call; folding them into a preceding
    /// operation is not done). Needs calibration data and quantized activations.
    /// </summary>
    public QuantizationBuilder SmoothActivations(double alpha = 0.5)
    {
        SmoothingAlpha = alpha;
        return this;
    }

    /// <summary>
    /// Static activation quantization gets one calibrated range per group of consecutive sampling steps
    /// (<paramref name="groups"/> equal groups, first to last step) instead of one for all steps; calls
    /// outside any calibrated step use the overall range. 0 or 1 = one range.
    /// </summary>
    public QuantizationBuilder StaticRangesPerTimestepGroup(int groups)
    {
        RangeGroups = groups;
        return this;
    }

    /// <summary>
    /// Calibrate and quantize block by block (see <see cref="BlockwiseCalibration"/>): peak memory of one
    /// block's statistics instead of the whole model's, at the price of one calibration pass per block.
    /// </summary>
    public QuantizationBuilder CalibrateBlockByBlock(BlockwiseCalibration? options = null)
    {
        Blockwise = options ?? new BlockwiseCalibration();
        return this;
    }

    /// <summary>
    /// AdaTSQ's Pareto-aware timestep-dynamic bit-width allocation: every selected layer is quantized once
    /// per bit-width of <paramref name="bits"/> (by the quantizer, e.g. GPTQ with Fisher-weighted calibration),
    /// then a beam search of width <paramref name="beamWidth"/> over the sampling steps of
    /// <paramref name="trajectories"/> picks each layer's bits per step under <paramref name="budget"/>
    /// (see <see cref="BitWidthSearch"/>). The result's policy is the best one found, its
    /// <see cref="QuantizationResult.Search"/> the whole frontier; layers keep only the versions it uses.
    /// Weights(...)/Activations(...), when given, are the spec templates whose bits the search varies.
    /// </summary>
    public QuantizationBuilder SearchBitWidths(IReadOnlyList<int> bits, BitBudget budget, int beamWidth, SearchTrajectories trajectories) =>
        SearchBitWidths(trajectories, new BitWidthSearchOptions { WeightBits = bits ?? throw new ArgumentNullException(nameof(bits)), Budget = budget, BeamWidth = beamWidth });

    /// <summary>The bit-width search with every option (see <see cref="SearchBitWidths(IReadOnlyList{int}, BitBudget, int, SearchTrajectories)"/>).</summary>
    public QuantizationBuilder SearchBitWidths(SearchTrajectories trajectories, BitWidthSearchOptions options)
    {
        Search = (trajectories ?? throw new ArgumentNullException(nameof(trajectories)), options ?? throw new ArgumentNullException(nameof(options)));
        return this;
    }

    /// <summary>The calibration data, as a source that runs the model (e.g. over a denoising trajectory).</summary>
    public QuantizationBuilder CalibrationData(ICalibrationSource source)
    {
        Source = source ?? throw new ArgumentNullException(nameof(source));
        SourceInputs = null;
        return this;
    }

    /// <summary>The calibration data as input batches of a single-input model (<c>Module&lt;Tensor, Tensor&gt;</c>).</summary>
    public QuantizationBuilder CalibrationData(IEnumerable<Tensor> inputs)
    {
        SourceInputs = (inputs ?? throw new ArgumentNullException(nameof(inputs))).ToList();
        Source = null;
        return this;
    }

    /// <summary>The weight quantizer (default: <see cref="RtnQuantizer"/>).</summary>
    public QuantizationBuilder Quantizer(IQuantizer quantizer)
    {
        QuantizerInstance = quantizer ?? throw new ArgumentNullException(nameof(quantizer));
        _quantizerFactory = null;
        return this;
    }

    /// <summary>The policy that picks each layer's config per timestep (instead of <see cref="Weights(int,int,bool,double)"/>/<see cref="Activations(int,bool,bool,double)"/>).</summary>
    public QuantizationBuilder Policy(ITimestepPolicy policy)
    {
        PolicyInstance = policy ?? throw new ArgumentNullException(nameof(policy));
        return this;
    }

    /// <summary>
    /// Whether, when there is calibration data, each layer's report includes its relative output error
    /// ‖(W−Q)X‖/‖WX‖ on that data (default true). It needs Σ x xᵀ per layer — in² float64 values,
    /// e.g. 170 MB for a 4608-input layer — so turn it off for large models when the quantizer does
    /// not need second moments anyway.
    /// </summary>
    public QuantizationBuilder ReportOutputError(bool enabled = true)
    {
        OutputErrorReport = enabled;
        return this;
    }

    /// <summary>Where the run logs what it does.</summary>
    public QuantizationBuilder WithLogger(ILogger logger)
    {
        Logger = logger ?? throw new ArgumentNullException(nameof(logger));
        return this;
    }

    /// <summary>Receives progress of the long stages (calibration, quantization).</summary>
    public QuantizationBuilder WithProgress(IProgress<QuantizationProgress> progress)
    {
        Progress = progress ?? throw new ArgumentNullException(nameof(progress));
        return this;
    }

    /// <summary>Checks the whole configuration and returns the pipeline that applies it.</summary>
    /// <exception cref="QuantizationConfigurationException">Lists every problem found.</exception>
    public QuantizationPipeline Build()
    {
        var problems = new List<string>();
        if (Model is null) problems.Add("no model: call ForModel(model).");
        if (PolicyInstance is null && WeightSpec is null && ActivationSpec is null && Search is null)
            problems.Add("nothing to quantize: call Weights(...) and/or Activations(...), or Policy(...).");
        if (PolicyInstance is not null && (WeightSpec is not null || ActivationSpec is not null))
            problems.Add("both Policy(...) and Weights(...)/Activations(...) were given: the policy decides every layer's bits, so give one or the other.");
        if (WeightSpec is not null) problems.AddRange(WeightSpec.FindProblems(QuantTarget.Weight));
        if (ActivationSpec is not null) problems.AddRange(ActivationSpec.FindProblems(QuantTarget.Activation));

        LayerSelector? selector = null;
        try { selector = new LayerSelector(_include, _exclude); }
        catch (ArgumentException e) { problems.Add(e.Message); }

        var quantizer = QuantizerInstance ?? _quantizerFactory?.Invoke(Logger) ?? new RtnQuantizer();
        var chosenCalibrator = CalibratorInstance ?? _calibratorFactory?.Invoke(Logger);
        ICalibrationSource? source = Source;
        if (SourceInputs is not null)
        {
            if (Model is nn.Module<Tensor, Tensor> single) source = new ModuleCalibrationSource(single, SourceInputs);
            else if (Model is not null) problems.Add($"CalibrationData(tensors) needs a single-input model (Module<Tensor, Tensor>), but {Model.GetType().Name} is not one: pass an ICalibrationSource instead.");
        }
        bool staticActivations = ActivationSpec is { IsEnabled: true, Dynamic: false };
        if (source is null)
        {
            if (quantizer.Requirements.InputSecondMoments)
                problems.Add($"quantizer {quantizer.Name} needs calibration data: call CalibrationData(...).");
            if (staticActivations)
                problems.Add("static activation quantization needs calibration data for its ranges: call CalibrationData(...), or use dynamic activations.");
            if (chosenCalibrator is not null)
                problems.Add($"a calibrator ({chosenCalibrator.Name}) was given but no calibration data: call CalibrationData(...).");
        }
        if (SmoothingAlpha is { } a)
        {
            if (!(a >= 0 && a <= 1)) problems.Add($"SmoothQuant α {a} must be in [0, 1].");
            if (source is null) problems.Add("SmoothActivations needs calibration data (per-channel input maxima): call CalibrationData(...).");
        }
        if (RangeGroups < 0) problems.Add($"{RangeGroups} timestep groups for static ranges: must not be negative.");
        if (Blockwise is not null && source is null) problems.Add("CalibrateBlockByBlock needs calibration data: call CalibrationData(...).");
        BitWidthSearchOptions? searchOptions = null;
        if (Search is { } search)
        {
            searchOptions = search.Options with
            {
                WeightSpec = WeightSpec is { IsEnabled: true } w ? w : search.Options.WeightSpec,
                ActivationSpec = ActivationSpec ?? search.Options.ActivationSpec,
            };
            if (PolicyInstance is not null) problems.Add("both Policy(...) and SearchBitWidths(...) were given: the search makes the policy, so give one or the other.");
            problems.AddRange(searchOptions.FindProblems().Select(p => $"bit-width search: {p}"));
        }
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);

        var policy = searchOptions is not null && selector is not null
            ? new SearchSpacePolicy(ModelSurgery.FindLinears(Model!).Where(l => selector.Matches(l.Name)).Select(l => l.Name).ToList(), searchOptions)
            : PolicyInstance ?? new StaticTimestepPolicy(new LayerQuantConfig(WeightSpec ?? QuantSpec.FullPrecision, ActivationSpec ?? QuantSpec.FullPrecision));
        var calibrator = source is null ? null : chosenCalibrator ?? new UniformCalibrator(Logger);
        return new QuantizationPipeline(Model!, selector!, policy, quantizer, calibrator, source, OutputErrorReport, Logger, Progress,
            SmoothingAlpha, RangeGroups, Blockwise, Search is { } s ? (s.Trajectories, searchOptions!) : null);
    }
}
