namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// The method × bit-setting grid of a <see cref="ModelComparison"/>: the reference cell, every cell (computed now or
/// loaded from the cache), and the comparisons made from their per-image values: paired differences between any two
/// cells, the best method per bit setting, and a method's wins, ties and losses against the others.
/// </summary>
public sealed class ComparisonResult
{
    private readonly Dictionary<(string Method, string Bits), ComparisonCell> _cells;

    /// <summary>Assembles a result (cells in row-major order: methods outer, bit settings inner).</summary>
    /// <exception cref="ArgumentException">A (method, bits) pair has no cell or two.</exception>
    public ComparisonResult(ComparisonCell reference, IReadOnlyList<string> methods, IReadOnlyList<BitSetting> bits,
        IReadOnlyList<ComparisonCell> cells, int computed, int loaded, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(methods);
        ArgumentNullException.ThrowIfNull(bits);
        ArgumentNullException.ThrowIfNull(cells);
        _cells = new Dictionary<(string, string), ComparisonCell>();
        foreach (var cell in cells)
            if (!_cells.TryAdd((cell.Method, cell.Bits), cell)) throw new ArgumentException($"two cells for {cell.Key}.", nameof(cells));
        var missing = methods.SelectMany(m => bits.Select(b => (m, b.Name))).Where(k => !_cells.ContainsKey(k)).ToList();
        if (missing.Count > 0) throw new ArgumentException($"no cell for {string.Join(", ", missing.Select(k => $"{k.m}/{k.Name}"))}.", nameof(cells));
        Reference = reference;
        Methods = methods;
        Bits = bits;
        Cells = cells;
        ComputedCells = computed;
        LoadedCells = loaded;
        Level = level;
    }

    /// <summary>The reference row (e.g. full precision): its PSNR against itself is ∞; FID and accuracy are the baseline figures.</summary>
    public ComparisonCell Reference { get; }

    /// <summary>Row names in order.</summary>
    public IReadOnlyList<string> Methods { get; }

    /// <summary>Columns in order.</summary>
    public IReadOnlyList<BitSetting> Bits { get; }

    /// <summary>Every cell, methods outer, bit settings inner.</summary>
    public IReadOnlyList<ComparisonCell> Cells { get; }

    /// <summary>Cells computed by this run (the reference not counted).</summary>
    public int ComputedCells { get; }

    /// <summary>Cells loaded from the cache by this run (the reference not counted).</summary>
    public int LoadedCells { get; }

    /// <summary>Coverage of the paired intervals.</summary>
    public double Level { get; }

    /// <summary>The cell of (<paramref name="method"/>, <paramref name="bits"/>).</summary>
    /// <exception cref="KeyNotFoundException">The grid has no such cell.</exception>
    public ComparisonCell Cell(string method, string bits) =>
        _cells.TryGetValue((method, bits), out var cell) ? cell
        : throw new KeyNotFoundException($"no cell {method}/{bits}; methods are {string.Join(", ", Methods)}, bit settings {string.Join(", ", Bits.Select(b => b.Name))}.");

    /// <summary>
    /// <paramref name="a"/> and <paramref name="b"/> compared image by image (Δ = B − A): ΔPSNR and ΔSSIM with t
    /// intervals, McNemar on correctness.
    /// </summary>
    /// <exception cref="InvalidOperationException">A cell failed, or the two were evaluated on different sample counts.</exception>
    public CellComparison Compare(ComparisonCell a, ComparisonCell b) => Paired(a, b, Level);

    /// <summary>The paired comparison of two cells (Δ = B − A) at <paramref name="level"/>.</summary>
    /// <exception cref="InvalidOperationException">A cell failed, or the two were evaluated on different sample counts.</exception>
    public static CellComparison Paired(ComparisonCell a, ComparisonCell b, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.IsOk || !b.IsOk) throw new InvalidOperationException($"cannot pair {a.Key} with {b.Key}: {(a.IsOk ? b.Key : a.Key)} has no figures ({(a.IsOk ? b.Failure : a.Failure)}).");
        if (a.Psnr.Count != b.Psnr.Count) throw new InvalidOperationException($"cannot pair {a.Key} ({a.Psnr.Count} images) with {b.Key} ({b.Psnr.Count} images).");
        return new CellComparison(a.Key, b.Key,
            PairedComparison.MeanDifference(a.Psnr, b.Psnr, level),
            a.Ssim.Count > 0 && b.Ssim.Count == a.Ssim.Count ? PairedComparison.MeanDifference(a.Ssim, b.Ssim, level) : null,
            a.Correct.Count > 0 && b.Correct.Count == a.Correct.Count ? PairedComparison.McNemar(a.Correct, b.Correct) : null);
    }

    /// <summary><paramref name="method"/> against <paramref name="baseline"/> (both cells of the same bit setting).</summary>
    public static ComparisonVerdict Judge(ComparisonCell method, ComparisonCell baseline, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(baseline);
        if (!method.IsOk || !baseline.IsOk) return new ComparisonVerdict(method.Method, baseline.Method, method.Bits, VerdictOutcome.Unavailable, null);
        var paired = Paired(baseline, method, level).Psnr;
        return new ComparisonVerdict(method.Method, baseline.Method, method.Bits,
            ComparisonVerdict.Decide(method.Summary!.Psnr, baseline.Summary!.Psnr, paired.Difference), paired);
    }

    /// <summary>For every bit setting, the successful cell with the highest mean PSNR, and whether it is separated from all others.</summary>
    public IReadOnlyList<BestCell> BestPerBitSetting() => Bits.Select(b =>
    {
        var ok = Methods.Select(m => Cell(m, b.Name)).Where(c => c.IsOk).ToList();
        if (ok.Count == 0) return new BestCell(b.Name, null, false);
        var best = ok.MaxBy(c => c.Summary!.Psnr.Estimate)!;
        bool separated = ok.Where(c => c != best).All(c => Judge(best, c, Level).Outcome == VerdictOutcome.Win);
        return new BestCell(b.Name, best, separated);
    }).ToList();

    /// <summary><paramref name="method"/> against every other method at every bit setting (bit settings outer).</summary>
    /// <exception cref="ArgumentException">The grid has no such method.</exception>
    public IReadOnlyList<ComparisonVerdict> Verdicts(string method)
    {
        if (!Methods.Contains(method)) throw new ArgumentException($"no method '{method}' in the comparison; methods are {string.Join(", ", Methods)}.", nameof(method));
        return Bits.SelectMany(b => Methods.Where(m => m != method).Select(m => Judge(Cell(method, b.Name), Cell(m, b.Name), Level))).ToList();
    }
}
