using AdaTSQ.Calibration;
using ScottPlot;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>Plots the temporal Fisher weights α over the sampling steps (one line per layer kind, and the model's total).</summary>
internal static class FisherPlot
{
    public static void Save(string path, TemporalFisher fisher, FisherWeighting weighting, IEnumerable<double>? otherTemperatures = null, string loss = "Noise")
    {
        var plot = new Plot();
        double[] steps = fisher.Steps.Select(s => (double)s.StepIndex).ToArray();
        var perLayer = fisher.Weights(weighting with { PerLayer = true });
        // One line per layer kind (qkv, proj, fc1, fc2, adaLN …), averaged over blocks: 30+ lines would be unreadable.
        foreach (var group in fisher.Layers.GroupBy(Kind).OrderBy(g => g.Key))
        {
            var mean = steps.Select((_, t) => group.Average(l => perLayer[l][t])).ToArray();
            var line = plot.Add.Scatter(steps, mean);
            line.LegendText = $"{group.Key} (α per layer, mean of {group.Count()})";
            line.MarkerSize = 0;
        }
        var total = weighting.Normalize(fisher.StepTotals());
        var sum = plot.Add.Scatter(steps, total);
        sum.LegendText = "whole model (α of Σ_l F)";
        sum.LineWidth = 3;
        sum.MarkerSize = 4;
        sum.Color = Colors.Black;
        foreach (var tau in (otherTemperatures ?? []).Distinct().Where(t => t != weighting.Temperature))
        {
            var alt = plot.Add.Scatter(steps, (weighting with { Temperature = tau }).Normalize(fisher.StepTotals()));
            alt.LegendText = $"whole model, τ = {tau}";
            alt.LineWidth = 2;
            alt.LinePattern = LinePattern.Dashed;
            alt.MarkerSize = 0;
        }
        plot.Title($"Temporal Fisher weights α ({loss} loss, τ = {weighting.Temperature}, floor {weighting.Floor}; {fisher.SamplesPerStep} samples/step)");
        plot.XLabel("sampling step (0 = noisiest)");
        plot.YLabel("α (mean 1 over steps)");
        plot.Axes.SetLimitsY(0, Math.Max(total.Max(), perLayer.Values.Max(v => v.Max())) * 1.05);
        plot.ShowLegend(Alignment.UpperLeft);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, 900, 500);
    }

    private static string Kind(string layer)
    {
        var parts = layer.Split('.');
        return parts.Length >= 2 && parts[0] == "blocks" ? string.Join('.', parts.Skip(2)) : layer;
    }
}
