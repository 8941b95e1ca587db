using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Policies;
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
        if (PolicyInstance is null && WeightSpec is null && ActivationSpec is null)
            problems.Add("nothing to quantize: call Weights(...) and/or Activations(...), or Policy(...).");
        if (PolicyInstance is not null && (WeightSpec is not null || ActivationSpec is not null))
            problems.Add("both Policy(...) and Weights(...)/Activations(...) were given: the policy decides every layer's bits, so give one or the other.");
        if (WeightSpec is not null) problems.AddRange(WeightSpec.FindProblems(QuantTarget.Weight));
        if (ActivationSpec is not null) problems.AddRange(ActivationSpec.FindProblems(QuantTarget.Activation));

        LayerSelector? selector = null;
        try { selector = new LayerSelector(_include, _exclude); }
        catch (ArgumentException e) { problems.Add(e.Message); }

        var quantizer = QuantizerInstance ?? new RtnQuantizer();
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
            if (CalibratorInstance is not null)
                problems.Add($"a calibrator ({CalibratorInstance.Name}) was given but no calibration data: call CalibrationData(...).");
        }
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);

        var policy = PolicyInstance ?? new StaticTimestepPolicy(new LayerQuantConfig(WeightSpec ?? QuantSpec.FullPrecision, ActivationSpec ?? QuantSpec.FullPrecision));
        var calibrator = source is null ? null : CalibratorInstance ?? new UniformCalibrator(Logger);
        return new QuantizationPipeline(Model!, selector!, policy, quantizer, calibrator, source, OutputErrorReport, Logger, Progress);
    }
}
