using System.Globalization;
using System.Text;
using System.Text.Json;
using AdaTSQ.Evaluation;
using AdaTSQ.Evaluation.Comparison;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>The Markdown and JSON reports of <c>compare</c>.</summary>
internal static class ComparisonReport
{
    /// <summary>What the report states besides the cells: the run's options and the methods' definitions.</summary>
    internal sealed record Header(string Model, int Samples, int ChunkSize, string Sampler, int Steps, double Cfg, bool Clip, long Seed, string Layers,
        int Resamples, int? FidReferenceCount, string? FidReferenceSource, string CacheDirectory, string Judged,
        IReadOnlyList<(string Name, string Template, string Description)> Methods, IReadOnlyList<(string Space, double Seconds, string Source)> Fishers);

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The quality table, the costs table, the best method per bit setting and the judged method's verdicts.</summary>
    public static string Markdown(ComparisonResult result, Header h)
    {
        var md = new StringBuilder();
        var notes = new List<string>();
        string Note(ComparisonCell cell)
        {
            notes.Add($"{cell.Key}: {cell.Failure}");
            return $"–&nbsp;[{notes.Count}]";
        }
        string fid = h.FidReferenceCount is { } n ? $"FID (ResNet-18 features, not Inception) against {n} real test images ({h.FidReferenceSource})" : "no FID (no reference statistics)";
        md.AppendLine(Inv, $"{h.Samples} generated samples per cell ({h.Samples / 10} per class; chunks of {h.ChunkSize}), {h.Sampler} {h.Steps} steps, CFG {h.Cfg}, x̂0 clipping {(h.Clip ? "on" : "off")}, seed {h.Seed}, per-sample noise; quantized layers {h.Layers}; model {h.Model}. {fid}.");
        md.AppendLine(Inv, $"Intervals are 95 %: Student-t for PSNR and SSIM, bootstrap ({h.Resamples} resamples) for FID (estimate ± 1.96 SD) and accuracy (percentile). Cells computed by this run: {result.ComputedCells}; loaded from the cache ({h.CacheDirectory}): {result.LoadedCells}. Method: docs/comparison-fashion-dit.md, docs/evaluation-method.md.");
        md.AppendLine();
        var r = result.Reference.Summary!;
        md.AppendLine(Inv, $"Full-precision reference (n = {r.Count}): FID {(r.Fid is { } rf ? Bracket(rf, "F2", 1) : "–")}, class accuracy {(r.Accuracy is { } ra ? Bracket(ra, "F1", 100) + " %" : "–")}.");
        md.AppendLine();
        var best = result.BestPerBitSetting().ToDictionary(b => b.Bits);
        md.AppendLine("Quality against full precision, per cell: PSNR (dB, mean ± 95 % CI; bold = highest mean in the column), SSIM (mean ± CI), FID [95 % CI], class accuracy [95 % CI]; \"int\" = sampled on the integer kernels.");
        md.AppendLine();
        md.AppendLine("| method | " + string.Join(" | ", result.Bits.Select(b => b.Name)) + " |");
        md.AppendLine("|---|" + string.Concat(result.Bits.Select(_ => "---:|")));
        foreach (var method in result.Methods)
        {
            md.Append("| ").Append(method).Append(" |");
            foreach (var b in result.Bits)
            {
                var cell = result.Cell(method, b.Name);
                if (!cell.IsOk) { md.Append(' ').Append(Note(cell)).Append(" |"); continue; }
                var s = cell.Summary!;
                string psnr = PlusMinus(s.Psnr, "F2");
                if (best[b.Name].Cell == cell) psnr = $"**{psnr}**";
                md.Append(Inv, $" {psnr}<br>SSIM {(s.Ssim is { } ss ? PlusMinus(ss, "F4") : "–")}<br>FID {(s.Fid is { } f ? Bracket(f, "F1", 1) : "–")}<br>acc {(s.Accuracy is { } a ? Bracket(a, "F1", 100) + " %" : "–")}{(cell.IntegerKernels ? "<br>int" : "")} |");
            }
            md.AppendLine();
        }
        md.AppendLine();
        md.AppendLine("Best per bit setting (highest mean PSNR; \"separated\" = its PSNR CI is disjoint from every other method's and every paired ΔPSNR CI excludes 0):");
        md.AppendLine();
        foreach (var b in result.BestPerBitSetting())
            md.AppendLine(b.Cell is null ? $"- {b.Bits}: every cell failed" : $"- {b.Bits}: {b.Cell.Method} ({(b.Separated ? "separated" : "not separated from every other method")})");
        if (result.Methods.Contains(h.Judged) && result.Methods.Count > 1)
        {
            md.AppendLine();
            md.AppendLine(Inv, $"{h.Judged} against each baseline: paired ΔPSNR = {h.Judged} − baseline (dB, mean [95 % CI]) over the same images; win / loss only where the two PSNR CIs are disjoint and the paired CI excludes 0, else tie.");
            md.AppendLine();
            md.AppendLine("| baseline | " + string.Join(" | ", result.Bits.Select(b => b.Name)) + " |");
            md.AppendLine("|---|" + string.Concat(result.Bits.Select(_ => "---:|")));
            var verdicts = result.Verdicts(h.Judged);
            foreach (var baseline in result.Methods.Where(m => m != h.Judged))
            {
                md.Append("| ").Append(baseline).Append(" |");
                foreach (var b in result.Bits)
                {
                    var v = verdicts.Single(x => x.Baseline == baseline && x.Bits == b.Name);
                    md.Append(' ').Append(v.Paired is { } p ? $"{v.Outcome.ToString().ToLowerInvariant()} {Bracket(p.Difference, "+0.00;-0.00", 1)}" : "–").Append(" |");
                }
                md.AppendLine();
            }
            var counts = verdicts.GroupBy(v => v.Outcome).ToDictionary(g => g.Key, g => g.Count());
            md.AppendLine();
            md.AppendLine(Inv, $"Totals: {counts.GetValueOrDefault(VerdictOutcome.Win)} wins, {counts.GetValueOrDefault(VerdictOutcome.Tie)} ties, {counts.GetValueOrDefault(VerdictOutcome.Loss)} losses, {counts.GetValueOrDefault(VerdictOutcome.Unavailable)} unavailable.");
        }
        md.AppendLine();
        md.AppendLine("Costs per cell: calibration + quantization wall time (configure, build, apply), sampling wall time (inside the sampler only), peak resident memory (per cell where the OS lets the peak be reset, else the process's peak so far: marked *), model weights (quantized layers' codes, scales and low-rank branches plus the float rest).");
        md.AppendLine();
        md.AppendLine("| method | " + string.Join(" | ", result.Bits.Select(b => b.Name)) + " |");
        md.AppendLine("|---|" + string.Concat(result.Bits.Select(_ => "---:|")));
        int failedNotes = notes.Count;
        foreach (var method in result.Methods)
        {
            md.Append("| ").Append(method).Append(" |");
            foreach (var b in result.Bits)
            {
                var cell = result.Cell(method, b.Name);
                if (cell.Costs is not { } c) { md.Append(" – |"); continue; }
                md.Append(Inv, $" calib {c.CalibrationSeconds:F1} s<br>sampling {c.SamplingSeconds:F1} s<br>peak {c.PeakResidentBytes / 1e9:F2} GB{(c.PeakIsPerCell ? "" : "*")}<br>weights {c.ModelWeightBytes / 1e6:F2} MB |");
            }
            md.AppendLine();
        }
        if (result.Reference.Costs is { } rc)
            md.AppendLine().AppendLine(Inv, $"Full precision: sampling {rc.SamplingSeconds:F1} s, peak {rc.PeakResidentBytes / 1e9:F2} GB{(rc.PeakIsPerCell ? "" : "*")}, weights {rc.ModelWeightBytes / 1e6:F2} MB.");
        foreach (var (space, seconds, source) in h.Fishers)
            md.AppendLine().AppendLine(Inv, $"AdaTSQ's temporal Fisher ({space} loss) is estimated once per cache and shared by its cells: {seconds:F1} s ({source}); not in the calibration column.");
        if (notes.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("Failed cells:");
            md.AppendLine();
            for (int i = 0; i < notes.Count; i++) md.AppendLine(Inv, $"[{i + 1}] {notes[i]}");
        }
        md.AppendLine();
        md.AppendLine("Methods (each an evaluate setting string, {bits} = the column's w<bits>a<bits>[-g64-ag64]):");
        md.AppendLine();
        foreach (var (name, template, description) in h.Methods) md.AppendLine($"- {name} = `{template}`: {description}");
        md.AppendLine();
        md.AppendLine("Bit settings: " + string.Join("; ", result.Bits.Select(b => b.Describe())) + ".");
        return md.ToString();
    }

    /// <summary>Everything: the options, every cell with its fingerprint inputs, per-image values and costs, the best per setting, the verdicts.</summary>
    public static string Json(ComparisonResult result, Header h)
    {
        static double? Finite(double v) => double.IsFinite(v) ? v : null;
        static object? Interval(ConfidenceInterval? ci) => ci is { } c ? new { estimate = Finite(c.Estimate), lower = Finite(c.Lower), upper = Finite(c.Upper), level = c.Level, method = c.Method } : null;
        static object Cell(ComparisonCell c) => new
        {
            method = c.Method, bits = c.Bits, status = c.Status.ToString(), failure = c.Failure, fingerprint = c.Fingerprint, fingerprint_inputs = c.FingerprintInputs,
            computed_at = c.ComputedAt, integer_kernels = c.IntegerKernels, integer_kernels_why_not = c.IntegerKernelsWhyNot,
            n = c.Summary?.Count, psnr = Interval(c.Summary?.Psnr), ssim = Interval(c.Summary?.Ssim), fid = Interval(c.Summary?.Fid),
            fid_reference_count = c.Summary?.FidReferenceCount, class_accuracy = Interval(c.Summary?.Accuracy),
            costs = c.Costs is { } k ? new { calibration_seconds = k.CalibrationSeconds, sampling_seconds = k.SamplingSeconds, peak_resident_bytes = k.PeakResidentBytes, peak_is_per_cell = k.PeakIsPerCell, model_weight_bytes = k.ModelWeightBytes, quantized_layer_bytes = k.QuantizedLayerBytes } : null,
            per_image = new { psnr = c.Psnr.Select(Finite), ssim = c.Ssim, correct = c.Correct },
        };
        return JsonSerializer.Serialize(new
        {
            model = h.Model, samples = h.Samples, chunk_size = h.ChunkSize, sampler = h.Sampler, steps = h.Steps, cfg = h.Cfg, clip = h.Clip, seed = h.Seed, layers = h.Layers,
            bootstrap_resamples = h.Resamples, real_stats = h.FidReferenceSource, real_stats_count = h.FidReferenceCount, cache = h.CacheDirectory,
            computed_cells = result.ComputedCells, loaded_cells = result.LoadedCells,
            methods = h.Methods.Select(m => new { name = m.Name, setting = m.Template, description = m.Description }),
            bit_settings = result.Bits.Select(b => new { name = b.Name, weights = b.Weights.ToString(), activations = b.Activations.ToString() }),
            fisher = h.Fishers.Select(f => new { loss = f.Space, seconds = f.Seconds, source = f.Source }),
            reference = Cell(result.Reference),
            cells = result.Cells.Select(Cell),
            best = result.BestPerBitSetting().Select(b => new { bits = b.Bits, method = b.Cell?.Method, separated = b.Separated }),
            judged = h.Judged,
            verdicts = result.Methods.Contains(h.Judged) ? result.Verdicts(h.Judged).Select(v => new
            {
                method = v.Method, baseline = v.Baseline, bits = v.Bits, outcome = v.Outcome.ToString(),
                delta_psnr = Interval(v.Paired?.Difference), pairs = v.Paired?.Count, excluded_pairs = v.Paired?.Excluded,
            }) : null,
        }, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>"36.47 ± 0.21" (symmetric interval); "∞" for identical images.</summary>
    private static string PlusMinus(ConfidenceInterval ci, string format) =>
        double.IsInfinity(ci.Estimate) ? "∞"
        : ci.Estimate.ToString(format, Inv) + (double.IsNaN(ci.Lower) ? "" : " ± " + ci.HalfWidth.ToString(format, Inv));

    /// <summary>"226.0 [219.3, 233.4]", values scaled by <paramref name="scale"/> (100 for percentages).</summary>
    private static string Bracket(ConfidenceInterval ci, string format, double scale) =>
        $"{(ci.Estimate * scale).ToString(format, Inv)} [{(ci.Lower * scale).ToString(format, Inv)}, {(ci.Upper * scale).ToString(format, Inv)}]";
}
