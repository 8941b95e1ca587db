using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QuaRot;

/// <summary>
/// QuaRot (Ashkboos et al., 2024, arXiv 2404.00456), its online input rotations: before quantization each selected
/// layer gets an orthonormal Hadamard rotation <c>R</c> of its input channels (<see cref="HadamardRotation"/>); its
/// quantized calls then compute <c>Q((x / s)·Rᵀ) · Q(W·diag(s)·Rᵀ)ᵀ + b</c>, equal to <c>x·Wᵀ + b</c> in exact arithmetic,
/// with activation outliers spread over all channels so that 4-bit per-token activations keep the other channels.
/// The rotation needs no data; the statistics of the rotated inputs are derived (<see cref="LayerStatistics.Rotated"/>:
/// the Hessian exactly, so GPTQ quantizes the rotated weight against the rotated Hessian; static ranges only as bounds).
/// Runs after SmoothQuant when both are used (smoothing, then rotation); the rotation runs online on every quantized
/// call (not folded into neighbouring layers): in the native kernel prologue on the CPU integer kernels, in TorchSharp
/// otherwise (see <c>docs/quarot.md</c>).
/// </summary>
public sealed class QuaRotTransform : ILayerTransform
{
    private readonly LayerSelector _selector;

    /// <summary>Creates the transform with <paramref name="options"/> (defaults: see <see cref="QuaRotOptions"/>).</summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public QuaRotTransform(QuaRotOptions? options = null)
    {
        Options = options ?? new QuaRotOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _selector = new LayerSelector(Options.Layers, Options.ExcludeLayers);
    }

    /// <summary>The options.</summary>
    public QuaRotOptions Options { get; }

    /// <inheritdoc />
    public string Name => "QuaRot";

    /// <inheritdoc />
    public bool SetsInputRotation => true;

    /// <inheritdoc />
    /// <remarks>Per-step channel extremes when ranges are kept per timestep group, to bound each group's rotated range.</remarks>
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) =>
        rangesPerTimestepGroup ? new CalibrationRequirements { PerStepChannelExtremes = true } : CalibrationRequirements.None;

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData) => Options.FindProblems();

    /// <summary>True when <paramref name="layer"/> with <paramref name="configs"/> is rotated by these options.</summary>
    public bool Selects(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(configs);
        bool quantized = Options.WeightOnlyLayers ? configs.Any(c => c.Weight.IsEnabled || c.Activation.IsEnabled) : configs.Any(c => c.Activation.IsEnabled);
        return quantized && _selector.Matches(layer.LayerName);
    }

    /// <inheritdoc />
    /// <exception cref="LayerQuantizationException">No Hadamard rotation of the chosen construction exists for the layer's width.</exception>
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        if (!Selects(layer, configs)) return null;
        HadamardRotation rotation;
        try
        {
            rotation = HadamardRotation.Create(layer.InFeatures, Options.Construction, Options.BlockSize, Options.RandomSigns ? Options.Seed : null);
        }
        catch (ArgumentException e)
        {
            throw new LayerQuantizationException(layer.LayerName, $"QuaRot: {e.Message} (exclude it with QuaRotOptions.ExcludeLayers).");
        }
        using (rotation) layer.SetInputRotation(rotation);
        return statistics?.Rotated(layer.InputRotation!);
    }
}
