using System.Globalization;
using System.Text;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>Prints a timestep policy as a table of layers × steps.</summary>
public static class PolicyTable
{
    /// <summary>
    /// One row per layer and one character per step: the config's letter from the legend below the table
    /// (a = the first config met, b = the next, …), columns grouped by ten steps; then the unweighted mean
    /// weight bits of the layers per step (one line, values rounded), and the legend (letter → e.g. W4A8).
    /// </summary>
    public static string FormatTable(this ITimestepPolicy policy, IReadOnlyList<string> layers, int stepCount)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepCount, 1);
        var legend = new List<LayerQuantConfig>();
        char Letter(LayerQuantConfig c)
        {
            int i = legend.IndexOf(c);
            if (i < 0) { legend.Add(c); i = legend.Count - 1; }
            return i < 26 ? (char)('a' + i) : i < 52 ? (char)('A' + i - 26) : '?';
        }
        var configs = layers.Select(l => Enumerable.Range(0, stepCount).Select(k => policy.Resolve(l, new TimestepInfo(k, stepCount, stepCount - 1 - k))).ToArray()).ToArray();
        int width = Math.Max("layer \\ step".Length, layers.Count == 0 ? 0 : layers.Max(l => l.Length));
        string Cells(Func<int, string> cell) => string.Join(" ", Enumerable.Range(0, (stepCount + 9) / 10)
            .Select(b => string.Concat(Enumerable.Range(b * 10, Math.Min(10, stepCount - b * 10)).Select(cell))));
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{policy.Name}: {layers.Count} layers × {stepCount} steps");
        sb.Append("layer \\ step".PadRight(width)).Append("  ").AppendLine(Cells(k => (k % 10).ToString(CultureInfo.InvariantCulture)));
        for (int l = 0; l < layers.Count; l++)
            sb.Append(layers[l].PadRight(width)).Append("  ").AppendLine(Cells(k => Letter(configs[l][k]).ToString()));
        if (layers.Count > 0)
        {
            var mean = Enumerable.Range(0, stepCount).Select(k => configs.Average(c => (double)c[k].WeightBits)).ToArray();
            sb.Append("mean weight bits".PadRight(width)).Append("  ").AppendLine(Cells(k => mean[k] >= 9.5 ? "+" : Math.Round(mean[k]).ToString(CultureInfo.InvariantCulture)));
            sb.AppendLine(CultureInfo.InvariantCulture, $"{"".PadRight(width)}  (per step: mean of the layers' weight bits, unweighted; + = 10 or more; average over steps {mean.Average():F2})");
        }
        sb.AppendLine("legend: " + string.Join(", ", legend.Select((c, i) => $"{Letter(c)} = {c} (weight {c.Weight}, activation {c.Activation})")));
        return sb.ToString();
    }
}
