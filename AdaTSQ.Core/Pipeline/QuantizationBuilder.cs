using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline;

/// <summary>
/// Composes a post-training quantization run: which model and layers, which bits, how calibration
/// data is collected, which quantizer turns weights into integers, which layer transforms and which
/// policy (or policy search) pick bits per timestep. Every method returns the builder, so calls chain;
/// <see cref="Build"/> checks everything at once and returns an immutable <see cref="QuantizationPipeline"/>
/// that <see cref="QuantizationPipeline.Apply"/> runs.
/// <para>
/// The builder knows no quantization method. Each method adds itself through an extension method in its own
/// folder (<c>Methods/&lt;Method&gt;/</c>), declared in this namespace so that it shows up here:
/// <c>UseHessianOptimization</c> (GPTQ), <c>SmoothActivations</c> (SmoothQuant), <c>UseFisherCalibration</c>
/// and <c>SearchBitWidths</c> (AdaTSQ). They plug in through <see cref="Quantizer(Func{ILogger?, IQuantizer})"/>,
/// <see cref="Calibrator(Func{ILogger?, ICalibrator})"/>, <see cref="AddLayerTransform"/> and
/// <see cref="SearchPolicy"/> and <see cref="AddPostQuantizationStep"/>, which a method outside this library can use the same way.
/// </para>
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
    private readonly List<ILayerTransform> _transforms = [];
    private Func<ILogger?, ICalibrator>? _calibratorFactory;
    private Func<ILogger?, IQuantizer>? _quantizerFactory;
    private readonly List<(string Name, Func<IQuantizer, IQuantizer> Decorate)> _quantizerDecorators = [];
    private nn.Module? _model;
    private QuantSpec? _weightSpec;
    private QuantSpec? _activationSpec;
    private ICalibrationSource? _source;
    private IReadOnlyList<Tensor>? _sourceInputs;
    private ITimestepPolicy? _policy;
    private ILogger? _logger;
    private IProgress<QuantizationProgress>? _progress;
    private bool _outputErrorReport = true;
    private int _rangeGroups;
    private BlockwiseCalibration? _blockwise;
    private IPolicySearch? _search;
    private readonly List<IPostQuantizationStep> _postSteps = [];
    private string? _cacheDirectory;

    /// <summary>The model to quantize (any TorchSharp module tree with linear layers). Required.</summary>
    public QuantizationBuilder ForModel(nn.Module model)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
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

    /// <summary>Weight quantization for every selected layer (with a policy search: the template whose bits it varies).</summary>
    public QuantizationBuilder Weights(QuantSpec spec)
    {
        _weightSpec = spec ?? throw new ArgumentNullException(nameof(spec));
        return this;
    }

    /// <summary>Activation bits: dynamic per-token (default) or static per-tensor from calibration. Default: none (16).</summary>
    public QuantizationBuilder Activations(int bits, bool dynamic = true, bool symmetric = true, double clipRatio = 1.0) =>
        Activations(QuantSpec.Activation(bits, dynamic, symmetric, clipRatio));

    /// <summary>Activation quantization for every selected layer.</summary>
    public QuantizationBuilder Activations(QuantSpec spec)
    {
        _activationSpec = spec ?? throw new ArgumentNullException(nameof(spec));
        return this;
    }

    /// <summary>How calibration statistics are collected (default: <see cref="UniformCalibrator"/> when there is data).</summary>
    public QuantizationBuilder Calibrator(ICalibrator calibrator)
    {
        ArgumentNullException.ThrowIfNull(calibrator);
        _calibratorFactory = _ => calibrator;
        return this;
    }

    /// <summary>A calibrator made at <see cref="Build"/> with the builder's logger (how methods plug in their calibrator).</summary>
    public QuantizationBuilder Calibrator(Func<ILogger?, ICalibrator> factory)
    {
        _calibratorFactory = factory ?? throw new ArgumentNullException(nameof(factory));
        return this;
    }

    /// <summary>The calibration data, as a source that runs the model (e.g. over a denoising trajectory).</summary>
    public QuantizationBuilder CalibrationData(ICalibrationSource source)
    {
        _source = source ?? throw new ArgumentNullException(nameof(source));
        _sourceInputs = null;
        return this;
    }

    /// <summary>The calibration data as input batches of a single-input model (<c>Module&lt;Tensor, Tensor&gt;</c>).</summary>
    public QuantizationBuilder CalibrationData(IEnumerable<Tensor> inputs)
    {
        _sourceInputs = (inputs ?? throw new ArgumentNullException(nameof(inputs))).ToList();
        _source = null;
        return this;
    }

    /// <summary>
    /// Save each block's calibration statistics in <paramref name="directory"/> and reuse them in later runs of the
    /// same plan instead of capturing again (see <see cref="Stages.CaptureStage"/> for what must match). Delete the
    /// directory when the calibration data change.
    /// </summary>
    public QuantizationBuilder CacheCalibration(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        _cacheDirectory = directory;
        return this;
    }

    /// <summary>The weight quantizer (default: <see cref="RtnQuantizer"/>).</summary>
    public QuantizationBuilder Quantizer(IQuantizer quantizer)
    {
        ArgumentNullException.ThrowIfNull(quantizer);
        _quantizerFactory = _ => quantizer;
        return this;
    }

    /// <summary>A weight quantizer made at <see cref="Build"/> with the builder's logger (how methods plug in their quantizer).</summary>
    public QuantizationBuilder Quantizer(Func<ILogger?, IQuantizer> factory)
    {
        _quantizerFactory = factory ?? throw new ArgumentNullException(nameof(factory));
        return this;
    }

    /// <summary>
    /// Wraps the plan's weight quantizer, whichever it is at <see cref="Build"/> (RTN by default, or the one set with
    /// <see cref="Quantizer(IQuantizer)"/> before or after this call), in <paramref name="decorate"/> — how a method changes
    /// what every quantizer makes (nested weight codes: <c>UseNestedWeights</c>). Decorators apply in the order added, the
    /// first innermost; one with the <paramref name="name"/> of an earlier one replaces it. Chainable.
    /// </summary>
    public QuantizationBuilder DecorateQuantizer(string name, Func<IQuantizer, IQuantizer> decorate)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(decorate);
        AddOrReplace(_quantizerDecorators, (Name: name, Decorate: decorate), d => d.Name);
        return this;
    }

    /// <summary>
    /// Adds a transform applied to each layer before its weight is quantized (in the order added). A transform with
    /// the <see cref="ILayerTransform.Name"/> of one already added replaces it.
    /// </summary>
    public QuantizationBuilder AddLayerTransform(ILayerTransform transform)
    {
        ArgumentNullException.ThrowIfNull(transform);
        AddOrReplace(_transforms, transform, t => t.Name);
        return this;
    }

    /// <summary>
    /// Adds a step run after every layer is quantized and the final policy is set (after <see cref="SearchPolicy"/>'s
    /// search, when there is one), in the order added: a correction measured on the quantized model, e.g. D²Quant's
    /// deviation-aware correction. A step with the <see cref="IPostQuantizationStep.Name"/> of one already added replaces it.
    /// </summary>
    public QuantizationBuilder AddPostQuantizationStep(IPostQuantizationStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        AddOrReplace(_postSteps, step, t => t.Name);
        return this;
    }

    // Adds item, or replaces the one of the same name in place (keeping the order of the plan's steps).
    private static void AddOrReplace<T>(List<T> items, T item, Func<T, string> name)
    {
        int i = items.FindIndex(t => name(t) == name(item));
        if (i >= 0) items[i] = item;
        else items.Add(item);
    }

    /// <summary>A search that picks the timestep policy after quantization (instead of <see cref="Policy"/>).</summary>
    public QuantizationBuilder SearchPolicy(IPolicySearch search)
    {
        _search = search ?? throw new ArgumentNullException(nameof(search));
        return this;
    }

    /// <summary>
    /// Static activation quantization gets one calibrated range per group of consecutive sampling steps
    /// (<paramref name="groups"/> equal groups, first to last step) instead of one for all steps; calls
    /// outside any calibrated step use the overall range. 0 or 1 = one range.
    /// </summary>
    public QuantizationBuilder StaticRangesPerTimestepGroup(int groups)
    {
        _rangeGroups = groups;
        return this;
    }

    /// <summary>
    /// Calibrate and quantize block by block (see <see cref="BlockwiseCalibration"/>): peak memory of one
    /// block's statistics instead of the whole model's, at the price of one calibration pass per block.
    /// </summary>
    public QuantizationBuilder CalibrateBlockByBlock(BlockwiseCalibration? options = null)
    {
        _blockwise = options ?? new BlockwiseCalibration();
        return this;
    }

    /// <summary>The policy that picks each layer's config per timestep (instead of <see cref="Weights(int,int,bool,double)"/>/<see cref="Activations(int,bool,bool,double)"/>).</summary>
    public QuantizationBuilder Policy(ITimestepPolicy policy)
    {
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
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
        _outputErrorReport = enabled;
        return this;
    }

    /// <summary>Where the run logs what it does.</summary>
    public QuantizationBuilder WithLogger(ILogger logger)
    {
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        return this;
    }

    /// <summary>Receives progress of the long stages (calibration, quantization, search).</summary>
    public QuantizationBuilder WithProgress(IProgress<QuantizationProgress> progress)
    {
        _progress = progress ?? throw new ArgumentNullException(nameof(progress));
        return this;
    }

    /// <summary>Checks the whole configuration and returns the pipeline that applies it.</summary>
    /// <exception cref="QuantizationConfigurationException">Lists every problem found.</exception>
    public QuantizationPipeline Build()
    {
        var problems = new List<string>();
        if (_model is null) problems.Add("no model: call ForModel(model).");
        if (_policy is null && _weightSpec is null && _activationSpec is null && _search is null)
            problems.Add("nothing to quantize: call Weights(...) and/or Activations(...), or Policy(...).");
        if (_policy is not null && (_weightSpec is not null || _activationSpec is not null))
            problems.Add("both Policy(...) and Weights(...)/Activations(...) were given: the policy decides every layer's bits, so give one or the other.");
        if (_weightSpec is not null) problems.AddRange(_weightSpec.FindProblems(QuantTarget.Weight));
        if (_activationSpec is not null) problems.AddRange(_activationSpec.FindProblems(QuantTarget.Activation));

        LayerSelector? selector = null;
        try { selector = new LayerSelector(_include, _exclude); }
        catch (ArgumentException e) { problems.Add(e.Message); }

        var quantizer = _quantizerFactory?.Invoke(_logger) ?? new RtnQuantizer();
        foreach (var (_, decorate) in _quantizerDecorators)
            quantizer = decorate(quantizer) ?? throw new InvalidOperationException("a quantizer decorator returned null.");
        var chosenCalibrator = _calibratorFactory?.Invoke(_logger);
        ICalibrationSource? source = _source;
        if (_sourceInputs is not null)
        {
            if (_model is nn.Module<Tensor, Tensor> single) source = new ModuleCalibrationSource(single, _sourceInputs);
            else if (_model is not null) problems.Add($"CalibrationData(tensors) needs a single-input model (Module<Tensor, Tensor>), but {_model.GetType().Name} is not one: pass an ICalibrationSource instead.");
        }
        bool staticActivations = _activationSpec is { IsEnabled: true, Dynamic: false };
        if (source is null)
        {
            if (quantizer.Requirements.InputSecondMoments)
                problems.Add($"quantizer {quantizer.Name} needs calibration data: call CalibrationData(...).");
            if (staticActivations)
                problems.Add("static activation quantization needs calibration data for its ranges: call CalibrationData(...), or use dynamic activations.");
            if (chosenCalibrator is not null)
                problems.Add($"a calibrator ({chosenCalibrator.Name}) was given but no calibration data: call CalibrationData(...).");
            if (_cacheDirectory is not null)
                problems.Add("CacheCalibration needs calibration data: call CalibrationData(...).");
        }
        foreach (var transform in _transforms) problems.AddRange(transform.FindProblems(source is not null));
        var smoothing = _transforms.Where(t => t.SetsInputSmoothing).Select(t => t.Name).ToList();
        if (smoothing.Count > 1)
            problems.Add($"{string.Join(" and ", smoothing)} each set the layers' input smoothing factors, and a layer has one set: use only one of them.");
        int firstRotation = _transforms.FindIndex(t => t.SetsInputRotation);
        if (firstRotation >= 0)
        {
            foreach (var late in _transforms.Skip(firstRotation + 1).Where(t => t.SetsInputSmoothing))
                problems.Add($"{late.Name} smooths the layers' inputs but comes after {_transforms[firstRotation].Name}, which rotates them; a call smooths, then rotates: add the smoothing step first.");
            foreach (var branch in _transforms.Where(t => t.SetsLowRankBranch))
                problems.Add($"{branch.Name}'s low-rank branch and {_transforms[firstRotation].Name}'s rotation cannot be combined yet (the branch is made in the unrotated input space): use one of them.");
        }
        if (_rangeGroups < 0) problems.Add($"{_rangeGroups} timestep groups for static ranges: must not be negative.");
        if (_blockwise is not null && source is null) problems.Add("CalibrateBlockByBlock needs calibration data: call CalibrationData(...).");
        if (_search is not null)
        {
            if (_policy is not null) problems.Add($"both Policy(...) and a policy search ({_search.Name}) were given: the search makes the policy, so give one or the other.");
            problems.AddRange(_search.FindProblems(_weightSpec, _activationSpec));
        }
        foreach (var step in _postSteps) problems.AddRange(step.FindProblems(_weightSpec, _activationSpec, source is not null));
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);

        var policy = _search is not null
            ? _search.SearchSpace(ModelSurgery.FindLinears(_model!).Where(l => selector!.Matches(l.Name)).Select(l => l.Name).ToList(), _weightSpec, _activationSpec)
            : _policy ?? new StaticTimestepPolicy(new LayerQuantConfig(_weightSpec ?? QuantSpec.FullPrecision, _activationSpec ?? QuantSpec.FullPrecision));
        var calibrator = source is null ? null : chosenCalibrator ?? new UniformCalibrator(_logger);
        return new QuantizationPipeline(_model!, selector!, policy, quantizer, calibrator, source, _outputErrorReport, _logger, _progress,
            _transforms.ToList(), _rangeGroups, _blockwise, _search, _weightSpec, _activationSpec, _cacheDirectory, _postSteps.ToList());
    }
}
