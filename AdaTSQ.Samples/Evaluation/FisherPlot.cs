using AdaTSQ.Calibration;
using ScottPlot;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>Plots the temporal Fisher weights α over the sampling steps (one line per layer kind, and the model's total).</summary>
internal static class FisherPlot
{
    /// <summary>
    /// Saves the plot of <paramref name="weighting"/>'s α, with a dashed whole-model line for each of <paramref name="others"/>
    /// (e.g. the settings' own temperatures or normalizations).
    /// </summary>
    public static void Save(string path, TemporalFisher fisher, FisherWeighting weighting, IEnumerable<FisherWeighting>? others = null, string loss = "Noise")
    {
        var plot = new Plot();
        double[] steps = fisher.Steps.Select(s => (double)s.StepIndex).ToArray();
        var perLayer = fisher.Weights(weighting with { PerLayer = true });
        // One line per layer kind (qkv, proj, fc1, fc2, adaLN …), averaged over blocks: 30+ lines would be unreadable.
        foreach (var group in fisher.Layers.GroupBy(Kind).OrderBy(g => g.Key))
        {
            var mean = steps.Select((_, t) => group.Average(l => perLayer[l][t])).ToArray();
            var line = plot.Add.Scatter(steps, Log(mean));
            line.LegendText = $"{group.Key} (α per layer, mean of {group.Count()})";
            line.MarkerSize = 0;
        }
        var total = weighting.Normalize(fisher.StepTotals());
        var sum = plot.Add.Scatter(steps, Log(total));
        sum.LegendText = "whole model (α of Σ_l F)";
        sum.LineWidth = 3;
        sum.MarkerSize = 4;
        sum.Color = Colors.Black;
        double top = Math.Max(total.Max(), perLayer.Values.Max(v => v.Max())), bottom = Math.Min(total.Min(), perLayer.Values.Min(v => v.Min()));
        foreach (var other in (others ?? []).Distinct().Where(w => w != weighting))
        {
            var alpha = other.Normalize(fisher.StepTotals());
            (top, bottom) = (Math.Max(top, alpha.Max()), Math.Min(bottom, alpha.Min()));
            var alt = plot.Add.Scatter(steps, Log(alpha));
            alt.LegendText = other.Normalization == weighting.Normalization ? $"whole model, τ = {other.Temperature}" : $"whole model, {other.Normalization}, τ = {other.Temperature}";
            alt.LineWidth = 2;
            alt.LinePattern = LinePattern.Dashed;
            alt.MarkerSize = 0;
        }
        plot.Title($"Temporal Fisher weights α ({loss} loss, {weighting.Normalization}, τ = {weighting.Temperature}, floor {weighting.Floor}; {fisher.SamplesPerStep} samples/step)");
        plot.XLabel("sampling step (0 = noisiest)");
        plot.YLabel("α (mean 1 over steps; log scale)");
        // Log scale: the values are plotted as log10 α, the ticks labelled with α.
        double[] ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            ticks.Select(Math.Log10).ToArray(), ticks.Select(t => t.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.SetLimitsY(Math.Log10(bottom) - 0.1, Math.Log10(top) + 0.1);
        // The legend goes to the top corner where α is low, so it hides no data.
        plot.ShowLegend(total[0] > total[^1] ? Alignment.UpperRight : Alignment.UpperLeft);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, 900, 500);
    }

    private static double[] Log(IEnumerable<double> values) => values.Select(v => Math.Log10(Math.Max(v, 1e-6))).ToArray();

    private static string Kind(string layer)
    {
        var parts = layer.Split('.');
        return parts.Length >= 2 && parts[0] == "blocks" ? string.Join('.', parts.Skip(2)) : layer;
    }
}
