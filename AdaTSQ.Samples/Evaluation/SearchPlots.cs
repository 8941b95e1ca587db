using AdaTSQ.Methods.AdaTSQ.Search;
using ScottPlot;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>The bit-width search's reports: the Pareto frontier, and bits over the sampling steps (lines and a layers × steps heat map).</summary>
internal static class SearchPlots
{
    /// <summary>PSNR (vs FP, on the search's trajectories) against average weight bits: each search's frontier, and the static references.</summary>
    public static void Frontier(string path, IReadOnlyList<(string Name, BitWidthSearchResult Result)> searches)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int i = 0;
        // Only weight-axis searches: an activation-axis search keeps its weight bits constant (BitsOverSteps shows it).
        searches = searches.Where(s => s.Result.Options.Axis == SearchAxis.WeightBits).ToList();
        foreach (var (name, result) in searches)
        {
            var points = result.Frontier.OrderBy(p => p.AverageWeightBits).ToList();
            var line = plot.Add.Scatter(points.Select(p => p.AverageWeightBits).ToArray(), points.Select(p => p.FinalPsnr).ToArray());
            line.LegendText = $"dynamic frontier, {name}";
            line.Color = palette.GetColor(i++);
            line.MarkerSize = 6;
            var best = plot.Add.Marker(result.Best.AverageWeightBits, result.Best.FinalPsnr, MarkerShape.OpenCircle, 14, line.Color);
            best.LegendText = "";
        }
        foreach (var group in searches.GroupBy(s => s.Result.Options.PairActivationBits))
        {
            var statics = group.SelectMany(s => s.Result.StaticReferences).GroupBy(p => p.Label).Select(g => g.First()).OrderBy(p => p.AverageWeightBits).ToList();
            if (statics.Count == 0) continue;
            var s = plot.Add.Scatter(statics.Select(p => p.AverageWeightBits).ToArray(), statics.Select(p => p.FinalPsnr).ToArray());
            s.LegendText = group.Key ? "static (time-constant) W=A policies" : "static (time-constant) policies";
            s.Color = group.Key ? Colors.Gray : Colors.Black;
            s.LinePattern = LinePattern.Dashed;
            s.MarkerShape = MarkerShape.FilledSquare;
            s.MarkerSize = 6;
        }
        plot.Title("Bit-width search: final-image PSNR vs FP against average weight bits (circles: best under each budget)");
        plot.XLabel("average weight bits (parameter-weighted, over steps)");
        plot.YLabel("PSNR vs FP on the search trajectories (dB)");
        plot.ShowLegend(Alignment.LowerRight);
        Save(plot, path, 1000, 600);
    }

    /// <summary>Average weight bits per step of each search's best policy.</summary>
    public static void BitsOverSteps(string path, IReadOnlyList<(string Name, BitWidthSearchResult Result)> searches)
    {
        var plot = new Plot();
        foreach (var (name, result) in searches)
        {
            double[] steps = Enumerable.Range(0, result.StepCount).Select(s => (double)s).ToArray();
            var line = plot.Add.Scatter(steps, result.Best.StepAverageBits.ToArray());
            line.LegendText = result.Options.Axis == SearchAxis.ActivationBits
                ? $"{name} (activation bits, avg {result.Best.AverageActivationBits:F2})"
                : $"{name} (avg {result.Best.AverageWeightBits:F2})";
            line.MarkerSize = 3;
            line.ConnectStyle = ConnectStyle.StepHorizontal;
        }
        plot.Title("Best dynamic policy: average searched bits at each sampling step (weight bits; activation bits where marked)");
        plot.XLabel("sampling step (0 = noisiest)");
        plot.YLabel("average bits (parameter-weighted over layers)");
        plot.ShowLegend(Alignment.UpperLeft);
        Save(plot, path, 1000, 500);
    }

    /// <summary>Weight bits of every layer (rows) at every step (columns) of the best policy.</summary>
    public static void Heatmap(string path, BitWidthSearchResult result, string title)
    {
        var layers = result.Layers;
        var values = new double[layers.Count, result.StepCount];
        for (int l = 0; l < layers.Count; l++)
            for (int s = 0; s < result.StepCount; s++)
                values[l, s] = result.Options.Axis == SearchAxis.ActivationBits ? result.Best.Policy[s, layers[l]].ActivationBits : result.Best.Policy[s, layers[l]].WeightBits;
        var plot = new Plot();
        var heat = plot.Add.Heatmap(values);
        heat.Colormap = new ScottPlot.Colormaps.Viridis();
        heat.FlipVertically = true;
        plot.Add.ColorBar(heat).Label = result.Options.Axis == SearchAxis.ActivationBits ? "activation bits" : "weight bits";
        plot.Title(title);
        plot.XLabel("sampling step (0 = noisiest)");
        plot.YLabel("layer");
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, layers.Count).Select(i => (double)(layers.Count - 1 - i)).ToArray(), layers.ToArray());
        Save(plot, path, 1200, Math.Max(400, 60 + layers.Count * 18));
    }

    private static void Save(Plot plot, string path, int width, int height)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, width, height);
    }
}
