using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline;

/// <summary>
/// A step that runs after every layer is quantized and the final policy is set (after the policy search, when the plan
/// has one): a correction measured on the quantized model, such as D²Quant's deviation-aware correction. Steps run in
/// the order they were added with <see cref="QuantizationBuilder.AddPostQuantizationStep"/>; each sees the model as the
/// previous one left it. A step that changes parameters outside the quantized layers should also implement
/// <see cref="IModelChangingTransform"/>, so that <see cref="QuantizationResult.Restore"/> and a failed run put them back.
/// </summary>
public interface IPostQuantizationStep
{
    /// <summary>A short name for logs and reports; a step with the name of one already added replaces it.</summary>
    string Name { get; }

    /// <summary>Configuration problems (empty when none), given the builder's weight and activation spec templates and
    /// whether the plan has calibration data.</summary>
    IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate, bool hasCalibrationData);

    /// <summary>Runs the step on the quantized model and returns its report (its type belongs to the step), or null.</summary>
    object? Run(PostQuantizationContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken);
}

/// <summary>What a <see cref="IPostQuantizationStep"/> gets to work with.</summary>
/// <param name="Model">The model, with its quantized layers in place.</param>
/// <param name="Layers">The quantized layers, each already following <paramref name="Policy"/>.</param>
/// <param name="Policy">The final policy (the searched one, when the plan has a search).</param>
/// <param name="Reports">The per-layer reports of the quantize stage (of the kept weight versions).</param>
/// <param name="Source">The plan's calibration data, or null.</param>
/// <param name="Logger">Where the step logs.</param>
public sealed record PostQuantizationContext(nn.Module Model, IReadOnlyList<QuantLinear> Layers, ITimestepPolicy Policy,
    IReadOnlyList<LayerReport> Reports, ICalibrationSource? Source, ILogger Logger);

/// <summary>The report of one post-quantization step.</summary>
/// <param name="Step">The step's <see cref="IPostQuantizationStep.Name"/>.</param>
/// <param name="Report">What the step returned (its type belongs to the step; D²Quant's DAC returns its list of
/// <c>DeviationCorrectionReport</c>s).</param>
public sealed record PostQuantizationReport(string Step, object? Report);
