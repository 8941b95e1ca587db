using System.Globalization;
using System.Text;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>Prints a timestep policy as a table of layers × steps.</summary>
public static class PolicyTable
{
    private const string Letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// <summary>
    /// The policy as text, for a sampler of <paramref name="stepCount"/> steps (mapped by position when the policy was
    /// made for another count): one row per layer, one letter per step (step 0 = noisiest on the left), in blocks of
    /// ten steps under a header of step numbers; a legend maps each letter to its config (<c>a  W4A8  weight int4
    /// per-channel sym, activation int8 per-token sym</c>), letters in order of increasing weight then activation bits.
    /// Below: the mean weight bits of the listed layers at each step (unweighted by parameter count; full precision
    /// counts as 16), runs of equal steps written once (<c>0–24: 4.00 · 25–49: 8.00</c>), and their average over steps.
    /// More than 52 distinct configs print as <c>?</c> beyond the 52nd.
    /// </summary>
    /// <param name="policy">The policy.</param>
    /// <param name="layers">The layers to list, in that order (e.g. the model's quantized layers).</param>
    /// <param name="stepCount">The number of sampling steps.</param>
    public static string FormatTable(this ITimestepPolicy policy, IReadOnlyList<string> layers, int stepCount)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepCount, 1);
        var configs = layers.Select(l => Enumerable.Range(0, stepCount).Select(k => policy.Resolve(l, new TimestepInfo(k, stepCount, stepCount - 1 - k))).ToArray()).ToArray();
        var firstSeen = configs.SelectMany(row => row).Distinct().ToList();
        var legend = firstSeen.OrderBy(c => c.WeightBits).ThenBy(c => c.ActivationBits).ThenBy(firstSeen.IndexOf).ToList();
        var letter = legend.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i < Letters.Length ? Letters[p.i] : '?');

        const string corner = "layer \\ step";
        int width = Math.Max(corner.Length, layers.Count == 0 ? 0 : layers.Max(l => l.Length));
        int blocks = (stepCount + 9) / 10;
        string Cells(Func<int, char> cell) => string.Join(" ", Enumerable.Range(0, blocks)
            .Select(b => new string(Enumerable.Range(b * 10, Math.Min(10, stepCount - b * 10)).Select(cell).ToArray())));

        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{policy.Name}: {layers.Count} layers × {stepCount} steps, one letter per step (legend below)");
        if (blocks > 1)
            sb.Append("".PadRight(width)).Append("  ").AppendLine(string.Concat(Enumerable.Range(0, blocks).Select(b => (b * 10).ToString(CultureInfo.InvariantCulture).PadRight(11))).TrimEnd());
        sb.Append(corner.PadRight(width)).Append("  ").AppendLine(Cells(k => (char)('0' + k % 10)));
        for (int l = 0; l < layers.Count; l++)
            sb.Append(layers[l].PadRight(width)).Append("  ").AppendLine(Cells(k => letter[configs[l][k]]));

        if (layers.Count > 0)
        {
            var mean = Enumerable.Range(0, stepCount).Select(k => configs.Average(row => (double)row[k].WeightBits)).ToArray();
            var shown = mean.Select(m => m.ToString("F2", CultureInfo.InvariantCulture)).ToArray();
            var runs = new List<string>();
            for (int start = 0, k = 1; k <= stepCount; k++)
            {
                if (k < stepCount && shown[k] == shown[start]) continue;
                runs.Add(k - 1 == start ? $"{start}: {shown[start]}" : $"{start}–{k - 1}: {shown[start]}");
                start = k;
            }
            sb.AppendLine(CultureInfo.InvariantCulture, $"mean weight bits per step (unweighted over the {layers.Count} layers; full precision counts 16):");
            for (int i = 0; i < runs.Count; i += 8) sb.Append("  ").AppendLine(string.Join(" · ", runs.Skip(i).Take(8)));
            sb.AppendLine(CultureInfo.InvariantCulture, $"  average over the {stepCount} steps: {mean.Average():F2}");
        }
        sb.AppendLine("legend:");
        foreach (var c in legend)
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {letter[c]}  {c,-7} weight {c.Weight}, activation {c.Activation}");
        return sb.ToString();
    }
}
