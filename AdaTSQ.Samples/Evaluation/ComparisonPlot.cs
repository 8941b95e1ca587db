using AdaTSQ.Evaluation.Comparison;
using ScottPlot;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>PSNR against full precision over the bit settings, one line per method, with the 95 % CIs as error bars.</summary>
internal static class ComparisonPlot
{
    public static void Save(string path, ComparisonResult result)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int count = result.Methods.Count;
        for (int m = 0; m < count; m++)
        {
            // Each method is shifted a little along x so overlapping error bars stay readable.
            double offset = count > 1 ? (m - (count - 1) / 2.0) * 0.25 / count : 0;
            var points = result.Bits.Select((b, i) => (X: i + offset, Cell: result.Cell(result.Methods[m], b.Name)))
                .Where(p => p.Cell.IsOk && double.IsFinite(p.Cell.Summary!.Psnr.Estimate)).ToList();
            if (points.Count == 0) continue;
            double[] xs = points.Select(p => p.X).ToArray();
            double[] ys = points.Select(p => p.Cell.Summary!.Psnr.Estimate).ToArray();
            double[] errors = points.Select(p => double.IsFinite(p.Cell.Summary!.Psnr.HalfWidth) ? p.Cell.Summary!.Psnr.HalfWidth : 0).ToArray();
            var color = palette.GetColor(m);
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = result.Methods[m];
            line.Color = color;
            line.MarkerSize = 6;
            var bars = plot.Add.ErrorBar(xs, ys, errors);
            bars.Color = color;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, result.Bits.Count).Select(i => (double)i).ToArray(), result.Bits.Select(b => b.Name).ToArray());
        plot.Axes.SetLimitsX(-0.5, result.Bits.Count - 0.5);
        int n = result.Reference.Summary?.Count ?? 0;
        plot.Title($"PSNR against full precision (mean ± 95 % CI, n = {n} per cell)");
        plot.XLabel("bit setting");
        plot.YLabel("PSNR vs FP (dB)");
        plot.ShowLegend(Alignment.UpperRight);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        // Rendered to a temporary name first, so an interrupted run never leaves a half-written PNG.
        string temporary = path + ".tmp.png";
        plot.SavePng(temporary, 900, 550);
        File.Move(temporary, path, overwrite: true);
    }
}
