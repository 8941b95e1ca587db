using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.D2Quant;

/// <summary>
/// The layer step of D²Quant's DSQ (see <see cref="DualScaleQuantizer"/>). For each layer matching
/// <see cref="D2QuantOptions.DsqLayers"/> it fits <c>W ≈ Q̂ · diag(s_c)</c> under the layer's lowest-bit weight spec, then
/// <list type="bullet">
/// <item>sets the layer's input smoothing to <c>1 / s_c</c>, so that a quantized call computes <c>Q̂ · (x ⊙ s_c)</c>
/// (<see cref="QuantLinear.SetInputSmoothing"/>: the call divides the input by the factors, and the weight versions stand
/// for <c>W · diag(1/s_c) = W / s_c</c>); full-precision calls ignore it, and</item>
/// <item>stores <c>Q̂</c> as that spec's weight version, so the plan's quantizer skips it (other weight specs of the
/// layer, if its policy has several, get the plan's quantizer on <c>W / s_c</c>).</item>
/// </list>
/// <para>
/// Why not absorb <c>s_c</c> into the previous layer as the paper does: in an LLM's gated MLP, <c>act(gate)⊙up</c> is
/// linear in <c>up</c>, so <c>s_c</c> folds into <c>up</c>'s rows exactly. DiT's MLP is <c>fc2(GELU(fc1 x))</c>, and GELU is
/// not homogeneous (<c>GELU(a·z) ≠ a·GELU(z)</c>), so folding into fc1 would change the float model. For weight-only
/// quantization the scale costs one element-wise multiply of fc2's input per call (or nothing once the weight is
/// dequantized: <c>Q̂ · diag(s_c)</c> is just the dequantized weight with its columns scaled).
/// </para>
/// </summary>
public sealed class DualScaleTransform : ILayerTransform
{
    private readonly D2QuantOptions _options;
    private readonly LayerSelector _layers;
    private readonly List<DualScaleLayerReport> _reports = [];

    /// <summary>Creates the step.</summary>
    /// <exception cref="Pipeline.QuantizationConfigurationException">The options are invalid.</exception>
    public DualScaleTransform(D2QuantOptions options)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        var problems = options.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _layers = new LayerSelector(options.DsqLayers, []);
    }

    /// <inheritdoc />
    public string Name => "D²Quant DSQ";

    /// <inheritdoc />
    public bool SetsInputSmoothing => true;

    /// <summary>One report per layer DSQ fitted, in the order they were fitted.</summary>
    public IReadOnlyList<DualScaleLayerReport> Reports => _reports;

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) => CalibrationRequirements.None;

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData) => _options.FindProblems();

    /// <inheritdoc />
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(configs);
        if (configs.FirstOrDefault(c => c.Activation.IsEnabled) is { } quantizedInput)
            throw new LayerQuantizationException(layer.LayerName, $"D²Quant is weight-only, but the layer's config {quantizedInput} quantizes its input: use activations at 16 bits.");
        if (!_options.Dsq || !_layers.Matches(layer.LayerName)) return null;
        var spec = configs.Select(c => c.Weight).Where(w => w.IsEnabled).OrderBy(w => w.Bits).FirstOrDefault();
        if (spec is null) return null;
        if (layer.InputSmoothing is not null || layer.InputRotation is not null || layer.LowRank is not null)
            throw new LayerQuantizationException(layer.LayerName, "D²Quant's DSQ needs a layer without smoothing, rotation or low-rank branch (another method already transformed it).");

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var fit = DualScaleQuantizer.Fit(layer.Weight.detach(), spec, _options.Rounds, _options.Tolerance);
        try
        {
            layer.SetInputSmoothing(fit.ColumnScale.reciprocal());
            layer.SetWeightVersion(fit.Quantized); // the layer owns Q̂ from here
            _reports.Add(new DualScaleLayerReport(layer.LayerName, spec, fit.RtnRelativeError, fit.RelativeErrors[^1], (fit.RelativeErrors.Count - 1) / 2,
                fit.ColumnScale.min().item<float>(), fit.ColumnScale.max().item<float>()));
            fit.ColumnScale.Dispose();
        }
        catch
        {
            if (!layer.HasWeightVersion(spec)) fit.Quantized.Dispose();
            fit.ColumnScale.Dispose();
            throw;
        }
        // The layer's input statistics are those of x; the quantized call sees x ⊙ s_c, which matters only to methods
        // that read statistics after this step (none in D²Quant, which quantizes no activations).
        return null;
    }
}

/// <summary>What DSQ did to one layer.</summary>
/// <param name="Layer">The layer's name.</param>
/// <param name="Spec">The weight spec DSQ fitted.</param>
/// <param name="RtnRelativeError"><c>‖W − Q̂‖²/‖W‖²</c> of round-to-nearest on the same spec.</param>
/// <param name="RelativeError"><c>‖W − Q̂·diag(s_c)‖²/‖W‖²</c> after DSQ.</param>
/// <param name="Rounds">Rounds run (fewer than asked when the error stopped falling).</param>
/// <param name="MinColumnScale">Smallest <c>s_c</c>.</param>
/// <param name="MaxColumnScale">Largest <c>s_c</c>.</param>
public sealed record DualScaleLayerReport(string Layer, QuantSpec Spec, double RtnRelativeError, double RelativeError, int Rounds,
    float MinColumnScale, float MaxColumnScale);
