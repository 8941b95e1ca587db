using AdaTSQ.Pipeline;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// One row of a method comparison: a name and how it configures a <see cref="QuantizationBuilder"/> for a bit setting.
/// <see cref="ModelComparison"/> hands <see cref="Configure"/> a builder that already has the model, the setting's
/// weight and activation specs, the logger and the cell's progress; the delegate adds the rest (layers, calibration
/// data, transforms, quantizer) and must not call <c>Build</c>.
/// </summary>
/// <param name="Name">Row name, e.g. <c>gptq</c>; unique within a comparison.</param>
/// <param name="Description">
/// Everything besides the name that decides the method's result (options, calibration sizes, seeds), as text: it
/// goes into every cell's cache fingerprint, so changing it recomputes the method's cells.
/// </param>
/// <param name="Configure">Adds the method to the builder for the given bit setting.</param>
public sealed record ComparisonMethod(string Name, string Description, Action<QuantizationBuilder, BitSetting> Configure);
