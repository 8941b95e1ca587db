using AdaTSQ.Pipeline;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// One row of a method comparison: a name and how it configures a <see cref="QuantizationBuilder"/> for a bit setting.
/// <see cref="ModelComparison"/> hands <see cref="Configure"/> a builder that already has the model, the setting's
/// weight and activation specs, the logger and the cell's progress; the delegate adds the rest (layers, calibration
/// data, transforms, quantizer) and must not call <c>Build</c>. What the delegate returns, if not null, is owned by the
/// cell: <see cref="ModelComparison"/> disposes it once the cell is done — after the quantized model is restored, and
/// also when the cell fails — so a method can hand over what it created for the run (recorded calibration calls, a
/// balancing folded into the model).
/// </summary>
/// <param name="Name">Row name, e.g. <c>gptq</c>; unique within a comparison.</param>
/// <param name="Description">
/// Everything besides the name that decides the method's result (options, calibration sizes, seeds), as text: it
/// goes into every cell's cache fingerprint, so changing it recomputes the method's cells.
/// </param>
/// <param name="Configure">
/// Adds the method to the builder for the given bit setting; returns what the cell must dispose after
/// <see cref="QuantizationResult.Restore"/>, or null.
/// </param>
public sealed record ComparisonMethod(string Name, string Description, Func<QuantizationBuilder, BitSetting, IDisposable?> Configure)
{
    /// <summary>A method whose configuration owns nothing beyond the builder.</summary>
    /// <param name="name">Row name, unique within a comparison.</param>
    /// <param name="description">Everything besides the name that decides the result (part of the cache fingerprint).</param>
    /// <param name="configure">Adds the method to the builder for the given bit setting.</param>
    public ComparisonMethod(string name, string description, Action<QuantizationBuilder, BitSetting> configure)
        : this(name, description, configure is null ? null! : (builder, bits) =>
        {
            configure(builder, bits);
            return null;
        })
    {
    }
}
