using System.Diagnostics;
using System.Globalization;
using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// Evaluates a grid of quantization methods × bit settings on one model, every cell on the same seeded noise and
/// labels (<see cref="ChunkedEvaluator"/>), so any two cells can be compared image by image. The reference (the model
/// as given, e.g. full precision) is sampled once and its images kept on disk, one file per chunk; then each cell is
/// built (<see cref="ComparisonMethod.Configure"/>), applied, moved onto the integer kernels where every layer runs
/// there, sampled, summarized, and the model restored. Every cell is cached as one JSON file keyed by a fingerprint
/// of what decides its result (<see cref="CellCache"/>): a rerun loads the cached cells and computes only the missing
/// ones, so a killed run resumes. A cell that throws is recorded as failed, with the reason, and the grid goes on.
/// The model-specific part, sampling one chunk with the model in its current state, is the caller's
/// <see cref="ChunkSampler"/>.
/// </summary>
public sealed class ModelComparison
{
    /// <summary>The method name of the reference cell.</summary>
    public const string ReferenceMethod = "reference";

    /// <summary>The bit-setting name of the reference cell.</summary>
    public const string ReferenceBits = "unquantized";

    private readonly nn.Module _model;
    private readonly ChunkSampler _sampler;
    private readonly ImageScorers _scorers;
    private readonly FeatureStatistics? _fidReference;
    private readonly ChunkedEvaluator _evaluator;
    private readonly CellCache _cache;
    private readonly ILogger _log;

    /// <summary>
    /// Prepares a comparison of <paramref name="model"/>, sampled chunk by chunk by <paramref name="sampler"/> (which
    /// must use the model as it is at call time: quantized, on the integer kernels, or restored), scored by
    /// <paramref name="scorers"/> (PSNR/SSIM always; class accuracy and FID when given, FID against
    /// <paramref name="fidReference"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid (every problem is listed).</exception>
    public ModelComparison(nn.Module model, ChunkSampler sampler, ComparisonOptions options, ImageScorers? scorers = null,
        FeatureStatistics? fidReference = null, Device? device = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Problems();
        if (problems.Count > 0) throw new ArgumentException("invalid comparison options: " + string.Join(" ", problems), nameof(options));
        _model = model;
        _sampler = sampler;
        _scorers = scorers ?? new ImageScorers();
        _fidReference = fidReference;
        Options = options;
        Device = device ?? torch.CPU;
        _log = logger ?? NullLogger.Instance;
        _evaluator = new ChunkedEvaluator(options.Evaluation, Device, _log);
        _cache = new CellCache(options.CacheDirectory, _log);
    }

    /// <summary>The options.</summary>
    public ComparisonOptions Options { get; }

    /// <summary>Where the noise is made and the reference images are loaded to.</summary>
    public Device Device { get; }

    /// <summary>
    /// A progress sink per computed cell, by cell key ("method/bits"; the reference's key for the reference):
    /// calibration, sampling and the FID bootstrap report to it. Null: none.
    /// </summary>
    public Func<string, IProgress<QuantizationProgress>?>? CellProgress { get; init; }

    /// <summary>The cache of the cells.</summary>
    public CellCache Cache => _cache;

    /// <summary>The fingerprint inputs shared by every cell: the model, the evaluation, the scorers and the caller's context.</summary>
    public IReadOnlyDictionary<string, string> CommonFingerprintInputs()
    {
        var e = Options.Evaluation;
        var inputs = new Dictionary<string, string>
        {
            ["schema"] = CellFingerprint.SchemaVersion,
            ["model"] = Options.ModelIdentity,
            ["samples"] = e.Samples.ToString(CultureInfo.InvariantCulture),
            ["chunk_size"] = e.ChunkSize.ToString(CultureInfo.InvariantCulture),
            ["seed"] = e.Seed.ToString(CultureInfo.InvariantCulture),
            ["noise"] = e.Noise.ToString(),
            ["sample_shape"] = string.Join("x", e.SampleShape),
            ["classes"] = e.Classes.ToString(CultureInfo.InvariantCulture),
            ["bootstrap_resamples"] = Options.BootstrapResamples.ToString(CultureInfo.InvariantCulture),
            ["level"] = Options.Level.ToString("R", CultureInfo.InvariantCulture),
            ["scorers"] = string.Create(CultureInfo.InvariantCulture,
                $"range {_scorers.DataRange}; ssim {_scorers.Ssim}; classifier {_scorers.Classify is not null}; features {(_scorers.Features is null ? 0 : _scorers.FeatureDimension)}"),
            ["fid_reference"] = _fidReference is null ? "none" : $"{_fidReference.Source} ({_fidReference.Count} images)",
        };
        foreach (var (key, value) in Options.Context) inputs["context." + key] = value;
        return inputs;
    }

    /// <summary>The fingerprint inputs of the reference cell.</summary>
    public IReadOnlyDictionary<string, string> ReferenceFingerprintInputs() =>
        new Dictionary<string, string>(CommonFingerprintInputs()) { ["cell"] = "reference" };

    /// <summary>The fingerprint inputs of the cell (<paramref name="method"/>, <paramref name="bits"/>).</summary>
    public IReadOnlyDictionary<string, string> CellFingerprintInputs(ComparisonMethod method, BitSetting bits)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(bits);
        return new Dictionary<string, string>(CommonFingerprintInputs())
        {
            ["cell"] = "quantized",
            ["method"] = method.Name,
            ["method_description"] = method.Description,
            ["bits"] = bits.Name,
            ["weights"] = bits.Weights.ToString(),
            ["activations"] = bits.Activations.ToString(),
            ["integer_kernels"] = (Options.UseIntegerKernels && Device.type == DeviceType.CPU).ToString(),
        };
    }

    /// <summary>
    /// Runs the grid: loads every cached cell, samples the reference if a missing cell needs it (or it is not cached),
    /// then computes the missing cells, methods outer and bit settings inner, saving each as soon as it is done.
    /// <paramref name="progress"/> counts cells ("cells", one step per cell, cached ones included).
    /// </summary>
    /// <exception cref="ArgumentException">No methods or bit settings, or duplicate names.</exception>
    /// <exception cref="InvalidOperationException">The model already holds quantized layers.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the cells finished so far stay cached.</exception>
    public ComparisonResult Run(IReadOnlyList<ComparisonMethod> methods, IReadOnlyList<BitSetting> bits,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        Validate(methods, bits);
        if (_model.modules().OfType<QuantLinear>().Any())
            throw new InvalidOperationException("the model already holds QuantLinear layers: restore it (QuantizationResult.Restore) before comparing methods on it.");
        long floatBytes = _model.parameters().Sum(p => p.numel() * p.ElementSize);

        var referenceInputs = ReferenceFingerprintInputs();
        string referenceFingerprint = CellFingerprint.Compute(referenceInputs);
        var store = new ReferenceChunkStore(Path.Combine(_cache.DirectoryPath, "reference-" + referenceFingerprint[..16]));
        var reference = _cache.TryLoad(ReferenceMethod, ReferenceBits, referenceFingerprint);
        if (reference is { IsOk: false }) reference = null;

        var grid = methods.SelectMany(m => bits.Select(b => (Method: m, Bits: b))).ToList();
        var cells = new ComparisonCell?[grid.Count];
        var fingerprints = new (IReadOnlyDictionary<string, string> Inputs, string Hash)[grid.Count];
        int loaded = 0;
        for (int i = 0; i < grid.Count; i++)
        {
            var inputs = CellFingerprintInputs(grid[i].Method, grid[i].Bits);
            fingerprints[i] = (inputs, CellFingerprint.Compute(inputs));
            var cached = _cache.TryLoad(grid[i].Method.Name, grid[i].Bits.Name, fingerprints[i].Hash);
            if (cached is not null && (cached.IsOk || !Options.RetryFailed))
            {
                cells[i] = cached;
                loaded++;
            }
        }
        int missing = grid.Count - loaded;
        _log.LogInformation("comparison of {Methods} methods × {Bits} bit settings: {Loaded} cells cached, {Missing} to compute (cache {Cache})",
            methods.Count, bits.Count, loaded, missing, _cache.DirectoryPath);

        bool referenceImagesOnDisk = Enumerable.Range(0, _evaluator.ChunkCount).All(c => File.Exists(store.PathOf(c)));
        if (reference is null || (missing > 0 && !referenceImagesOnDisk))
            reference = ComputeReference(referenceInputs, referenceFingerprint, store, floatBytes, cancellationToken);

        int done = loaded;
        progress?.Report(new QuantizationProgress("cells", done, grid.Count, loaded > 0 ? $"{loaded} cached" : null));
        for (int i = 0; i < grid.Count; i++)
        {
            if (cells[i] is not null) continue;
            cancellationToken.ThrowIfCancellationRequested();
            var (method, setting) = grid[i];
            var cell = ComputeCell(method, setting, fingerprints[i].Inputs, fingerprints[i].Hash, store, floatBytes, cancellationToken);
            _cache.Save(cell, cancellationToken);
            cells[i] = cell;
            progress?.Report(new QuantizationProgress("cells", ++done, grid.Count, cell.Key));
        }
        return new ComparisonResult(reference, methods.Select(m => m.Name).ToList(), bits, cells.Select(c => c!).ToList(), missing, loaded, Options.Level);
    }

    private static void Validate(IReadOnlyList<ComparisonMethod> methods, IReadOnlyList<BitSetting> bits)
    {
        ArgumentNullException.ThrowIfNull(methods);
        ArgumentNullException.ThrowIfNull(bits);
        var problems = new List<string>();
        if (methods.Count == 0) problems.Add("no methods.");
        if (bits.Count == 0) problems.Add("no bit settings.");
        if (methods.Any(m => m is null || string.IsNullOrWhiteSpace(m.Name) || m.Configure is null || m.Description is null))
            problems.Add("every method needs a name, a description and a Configure delegate.");
        if (bits.Any(b => b is null || string.IsNullOrWhiteSpace(b.Name) || b.Weights is null || b.Activations is null))
            problems.Add("every bit setting needs a name and both specs.");
        problems.AddRange(methods.Where(m => m?.Name is not null).GroupBy(m => m.Name).Where(g => g.Count() > 1).Select(g => $"method '{g.Key}' is listed twice."));
        problems.AddRange(bits.Where(b => b?.Name is not null).GroupBy(b => b.Name).Where(g => g.Count() > 1).Select(g => $"bit setting '{g.Key}' is listed twice."));
        if (methods.Any(m => m?.Name == ReferenceMethod)) problems.Add($"'{ReferenceMethod}' is the reference row's name; rename the method.");
        if (problems.Count > 0) throw new ArgumentException("invalid comparison grid: " + string.Join(" ", problems));
    }

    private ComparisonCell ComputeReference(IReadOnlyDictionary<string, string> inputs, string fingerprint, ReferenceChunkStore store, long floatBytes, CancellationToken ct)
    {
        // The cell file is the marker that the chunk files are complete: it goes first and comes back last.
        _cache.Delete(ReferenceMethod, ReferenceBits, fingerprint);
        string key = $"{ReferenceMethod}/{ReferenceBits}";
        _log.LogInformation("{Key}: sampling the reference images into {Directory}", key, store.DirectoryPath);
        var cellProgress = CellProgress?.Invoke(key);
        bool perCell = PeakMemory.TryReset();
        var accumulator = new SettingAccumulator(key, _scorers);
        var clock = new Stopwatch();
        _evaluator.Evaluate(Timed(clock), accumulator, null, store.Save, cellProgress, ct);
        var summary = accumulator.Summarize(_fidReference, Options.BootstrapResamples, Options.Level, BootstrapSeed, cellProgress);
        var cell = Finished(ReferenceMethod, ReferenceBits, inputs, fingerprint, accumulator, summary,
            new CellCosts(0, clock.Elapsed.TotalSeconds, PeakMemory.PeakResidentBytes(), perCell, floatBytes, 0), integer: false, whyNot: null);
        _cache.Save(cell, ct);
        return cell;
    }

    private ComparisonCell ComputeCell(ComparisonMethod method, BitSetting bits, IReadOnlyDictionary<string, string> inputs, string fingerprint,
        ReferenceChunkStore store, long floatBytes, CancellationToken ct)
    {
        string key = $"{method.Name}/{bits.Name}";
        var cellProgress = CellProgress?.Invoke(key);
        bool perCell = PeakMemory.TryReset();
        QuantizationResult? result = null;
        IntegerLinearKernel? kernel = null;
        IDisposable? owned = null;
        try
        {
            var watch = Stopwatch.StartNew();
            var builder = new QuantizationBuilder().ForModel(_model).Weights(bits.Weights).Activations(bits.Activations).WithLogger(_log);
            if (cellProgress is not null) builder.WithProgress(cellProgress);
            owned = method.Configure(builder, bits);
            result = builder.Build().Apply(ct);
            double calibrationSeconds = watch.Elapsed.TotalSeconds;

            string? whyNot = WhyNotOnIntegerKernels(result);
            if (whyNot is null)
            {
                kernel = new IntegerLinearKernel();
                IntegerLinearKernel.Attach(_model, kernel);
            }
            var accumulator = new SettingAccumulator(key, _scorers);
            var clock = new Stopwatch();
            _evaluator.Evaluate(Timed(clock), accumulator, c => store.Load(c, Device), null, cellProgress, ct);
            var summary = accumulator.Summarize(_fidReference, Options.BootstrapResamples, Options.Level, BootstrapSeed, cellProgress);
            var costs = new CellCosts(calibrationSeconds, clock.Elapsed.TotalSeconds, PeakMemory.PeakResidentBytes(), perCell,
                floatBytes - result.FloatWeightBytes + result.QuantizedWeightBytes, result.QuantizedWeightBytes);
            _log.LogInformation("{Key}: PSNR {Psnr:F2} dB over {Count} samples ({Where}); calibration {Calibration:F1} s, sampling {Sampling:F1} s",
                key, summary.Psnr.Estimate, summary.Count, whyNot is null ? "integer kernels" : "fake quantization", costs.CalibrationSeconds, costs.SamplingSeconds);
            return Finished(method.Name, bits.Name, inputs, fingerprint, accumulator, summary, costs, whyNot is null, whyNot);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _log.LogWarning("{Key} failed: {Type}: {Message}", key, e.GetType().Name, e.Message);
            return new ComparisonCell
            {
                Method = method.Name, Bits = bits.Name, Fingerprint = fingerprint, FingerprintInputs = inputs,
                Status = CellStatus.Failed, Failure = $"{e.GetType().Name}: {e.Message}", ComputedAt = DateTimeOffset.UtcNow,
            };
        }
        finally
        {
            if (kernel is not null)
            {
                IntegerLinearKernel.Attach(_model, null);
                kernel.Dispose();
            }
            try
            {
                result?.Restore();
            }
            finally
            {
                // What the method's configuration created for this cell (recorded calls, a folded balancing): after Restore().
                owned?.Dispose();
            }
        }
    }

    private string? WhyNotOnIntegerKernels(QuantizationResult result)
    {
        if (!Options.UseIntegerKernels) return "integer kernels turned off (ComparisonOptions.UseIntegerKernels)";
        if (Device.type != DeviceType.CPU) return $"the integer kernels run on the CPU, the comparison on {Device}";
        foreach (var layer in result.Layers)
            if (IntegerLinearKernel.WhyNotSupported(layer.Config, layer.InFeatures) is { } why) return $"{layer.Name}: {why}";
        foreach (var layer in ModelSurgery.FindQuantLinears(_model))
            if (layer.InputQuantizer is { } custom) return $"{layer.LayerName}: the inputs use the custom activation quantizer '{custom.Description}', which the integer kernels do not run";
        return null;
    }

    private ChunkSampler Timed(Stopwatch clock) => (chunk, token) =>
    {
        clock.Start();
        try { return _sampler(chunk, token); }
        finally { clock.Stop(); }
    };

    private int BootstrapSeed => unchecked((int)Options.Evaluation.Seed);

    private static ComparisonCell Finished(string method, string bits, IReadOnlyDictionary<string, string> inputs, string fingerprint,
        SettingAccumulator accumulator, SettingSummary summary, CellCosts costs, bool integer, string? whyNot) => new()
    {
        Method = method, Bits = bits, Fingerprint = fingerprint, FingerprintInputs = inputs, Status = CellStatus.Ok,
        Summary = summary, Psnr = accumulator.Psnr.ToArray(), Ssim = accumulator.Ssim.ToArray(), Correct = accumulator.Correct.ToArray(),
        Costs = costs, IntegerKernels = integer, IntegerKernelsWhyNot = whyNot, ComputedAt = DateTimeOffset.UtcNow,
    };
}
