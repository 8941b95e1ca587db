using System.Globalization;
using System.Text;
using AdaTSQ.Abstractions;
using static TorchSharp.torch;
using AdaTSQ.Quantization;

namespace AdaTSQ.Pipeline;

/// <summary>
/// The outcome of <see cref="QuantizationPipeline.Apply"/>: the model (quantized in place), the
/// per-layer error report and memory. <see cref="Restore"/> puts the original layers back, and undoes what the plan's
/// transforms changed elsewhere in the model (<see cref="IModelChangingTransform"/>, e.g. PTQ4DiT's fold).
/// </summary>
public sealed class QuantizationResult
{
    internal QuantizationResult(nn.Module model, ITimestepPolicy policy, string quantizer, SurgeryReport surgery, IReadOnlyList<LayerReport> layers,
        long floatWeightBytes, long quantizedWeightBytes, int calibrationItems, TimeSpan elapsed)
    {
        Model = model;
        Policy = policy;
        QuantizerName = quantizer;
        Surgery = surgery;
        Layers = layers;
        FloatWeightBytes = floatWeightBytes;
        QuantizedWeightBytes = quantizedWeightBytes;
        CalibrationItems = calibrationItems;
        Elapsed = elapsed;
    }

    /// <summary>The quantized model (the same object that was given).</summary>
    public nn.Module Model { get; }

    /// <summary>The policy its quantized layers follow.</summary>
    public ITimestepPolicy Policy { get; }

    /// <summary>Name of the weight quantizer used.</summary>
    public string QuantizerName { get; }

    /// <summary>Which layers were swapped.</summary>
    public SurgeryReport Surgery { get; }

    /// <summary>One report per quantized layer and weight version, in model order.</summary>
    public IReadOnlyList<LayerReport> Layers { get; }

    /// <summary>Bytes of the float weights and biases of the quantized layers.</summary>
    public long FloatWeightBytes { get; }

    /// <summary>Bytes of every quantized weight version held (codes, scales, zero points), plus the full-precision low-rank branches (SVDQuant) when layers have them.</summary>
    public long QuantizedWeightBytes { get; }

    /// <summary>Calibration items run (0 when none).</summary>
    public int CalibrationItems { get; }

    /// <summary>
    /// Largest amount of calibration statistics (Σ x xᵀ, channel extremes) held at once, in bytes: the
    /// whole model's with one-pass calibration, the largest block's with block-by-block calibration.
    /// </summary>
    public long PeakCalibrationBytes { get; init; }

    /// <summary>
    /// What the policy search found, when the plan had one (<see cref="QuantizationBuilder.SearchPolicy"/>); else null.
    /// AdaTSQ's bit-width search reads back as <c>result.Search</c> (an extension property in <c>AdaTSQ.Methods.AdaTSQ.Search</c>).
    /// </summary>
    public PolicySearchOutcome? SearchOutcome { get; init; }

    /// <summary>The weight versions each quantized layer keeps (one per weight spec its policy uses) and their bytes.</summary>
    public IReadOnlyList<LayerWeightVersions> WeightVersions { get; init; } = [];

    /// <summary>Wall time of the whole run.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>
    /// The report of each post-quantization step of the plan (<see cref="IPostQuantizationStep"/>), in the order they ran;
    /// empty when the plan has none.
    /// </summary>
    public IReadOnlyList<PostQuantizationReport> PostQuantizationReports { get; init; } = [];

    /// <summary>The plan's steps that changed the model outside its quantized layers, reverted by <see cref="Restore"/>.</summary>
    internal IReadOnlyList<IModelChangingTransform> ModelChanges { get; init; } = [];

    /// <summary>
    /// Puts the original linear layers back, then reverts, in reverse order, every change the plan's steps made to
    /// the rest of the model (<see cref="IModelChangingTransform"/>: D²Quant's correction, PTQ4DiT's balancing fold); returns how many layers
    /// were restored. After it the model computes what it computed before <c>Apply</c>.
    /// </summary>
    public int Restore()
    {
        int restored = ModelSurgery.Restore(Model);
        RevertModelChanges(ModelChanges);
        return restored;
    }

    internal static void RevertModelChanges(IEnumerable<IModelChangingTransform> changes)
    {
        foreach (var change in changes.Reverse())
            if (change.HasChangedModel) change.RevertModelChanges();
    }

    /// <summary>
    /// Per layer, the weight versions it keeps and their bytes (codes, scales, zero points). A layer whose policy uses
    /// several weight specs over the steps (e.g. W4 at some steps, W8 at others) stores one version per spec, and the
    /// line says so: <c>blocks.0.attn.qkv  stores int4 per-channel sym + int8 per-channel sym: 2 versions, 5,376 bytes</c>.
    /// A layer kept in full precision at every step stores none. Then the total against the float weights, which
    /// every quantized layer also keeps (for <see cref="Restore"/> and full-precision steps).
    /// </summary>
    public string FormatMemory()
    {
        var sb = new StringBuilder();
        int width = Math.Max(5, WeightVersions.Count == 0 ? 5 : WeightVersions.Max(l => l.Name.Length));
        foreach (var v in WeightVersions)
        {
            string what = v.Specs.Count switch
            {
                0 => "stores no quantized version (full-precision weight at every step)",
                1 => $"stores {v.Specs[0]}",
                _ => $"stores {string.Join(" + ", v.Specs)}: {v.Specs.Count} versions",
            };
            sb.AppendLine(CultureInfo.InvariantCulture, $"{v.Name.PadRight(width)}  {what}, {v.Bytes:N0} bytes");
        }
        int several = WeightVersions.Count(v => v.Specs.Count > 1);
        int versions = WeightVersions.Sum(v => v.Specs.Count);
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"total: {QuantizedWeightBytes:N0} bytes in {versions} weight versions of {WeightVersions.Count} layers ({several} of them store more than one version); the float weights and biases, kept as well, are {FloatWeightBytes:N0} bytes (the versions are {(FloatWeightBytes == 0 ? 0 : (double)QuantizedWeightBytes / FloatWeightBytes):P1} of that).");
        return sb.ToString();
    }

    /// <summary>A plain-text table of <see cref="Layers"/>.</summary>
    public string FormatTable()
    {
        var sb = new StringBuilder();
        int width = Math.Max(5, Layers.Count == 0 ? 5 : Layers.Max(l => l.Name.Length));
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"layer".PadRight(width)}  {"shape",-11}  {"config",-8}  {"weight err",10}  {"output err",10}  {"bytes",10}");
        foreach (var l in Layers)
        {
            string output = l.OutputRelativeError is { } o ? o.ToString("P2", CultureInfo.InvariantCulture) : "n/a";
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"{l.Name.PadRight(width)}  {$"{l.OutFeatures}x{l.InFeatures}",-11}  {l.Config,-8}  {l.WeightRelativeError.ToString("P2", CultureInfo.InvariantCulture),10}  {output,10}  {l.QuantizedBytes,10:N0}");
        }
        return sb.ToString();
    }
}
