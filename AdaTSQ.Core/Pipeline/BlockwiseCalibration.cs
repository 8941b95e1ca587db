using System.Text.RegularExpressions;
using AdaTSQ.Abstractions;

namespace AdaTSQ.Pipeline;

/// <summary>
/// Block-by-block calibration: the quantized layers are split into consecutive blocks (by the first
/// capture group of <see cref="BlockPattern"/> on the layer name; consecutive layers that do not match
/// form one block), and each block is calibrated and quantized before the next one is calibrated.
/// Only one block's statistics (e.g. its Σ x xᵀ) are alive at a time, so peak memory is that of the
/// largest block instead of the whole model. The calibration data are run once per block (time
/// grows with the number of blocks). With <see cref="FeedQuantizedOutputs"/>, the blocks already done
/// run quantized while later blocks are calibrated, so each block is calibrated on the inputs it
/// will see after quantization (as GPTQ does for language models).
/// </summary>
public sealed record BlockwiseCalibration
{
    /// <summary>The DiT/transformer default: layers under <c>blocks.N.</c> share a block.</summary>
    public const string DefaultBlockPattern = @"^(.*?blocks\.\d+)\.";

    /// <summary>A regular expression whose first group names a layer's block.</summary>
    public string BlockPattern { get; init; } = DefaultBlockPattern;

    /// <summary>Run the already-quantized blocks quantized while calibrating later ones. Default true.</summary>
    public bool FeedQuantizedOutputs { get; init; } = true;

    /// <summary>Splits <paramref name="layers"/> (in model order) into consecutive blocks.</summary>
    public IReadOnlyList<(string Block, IReadOnlyList<TLayer> Layers)> Split<TLayer>(IReadOnlyList<TLayer> layers) where TLayer : IQuantizableLayer
    {
        Regex regex;
        try { regex = new Regex(BlockPattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)); }
        catch (ArgumentException e) { throw new QuantizationConfigurationException([$"block pattern '{BlockPattern}' is not a valid regular expression: {e.Message}"]); }
        var blocks = new List<(string, IReadOnlyList<TLayer>)>();
        string? current = null;
        List<TLayer>? members = null;
        foreach (var layer in layers)
        {
            var m = regex.Match(layer.LayerName);
            string key = m.Success && m.Groups.Count > 1 ? m.Groups[1].Value : "(other)";
            if (key != current || members is null)
            {
                if (members is not null) blocks.Add((current!, members));
                current = key;
                members = [];
            }
            members.Add(layer);
        }
        if (members is not null) blocks.Add((current!, members));
        return blocks;
    }
}
