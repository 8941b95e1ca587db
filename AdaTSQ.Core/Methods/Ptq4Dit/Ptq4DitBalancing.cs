using AdaTSQ.Calibration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// PTQ4DiT on one model: from calibration statistics of the full-precision model, the balancing factors of every balanced
/// layer (CSB, with SSC's calibrated activation salience), folded offline into the model (<see cref="DiTReparameterization"/>).
/// Plug it into a quantization run with <c>UsePtq4Dit</c> (it then runs before the pipeline's capture), or call
/// <see cref="Apply"/> yourself. The model is changed in place; <see cref="Undo"/> puts its original parameters back
/// (after the quantized layers were restored); in a <c>UsePtq4Dit</c> run, the result's <c>Restore()</c> calls it.
/// </summary>
public sealed class Ptq4DitBalancing : IDisposable
{
    private BalancingFold? _fold;
    private bool _applied;
    private IReadOnlyList<Ptq4DitLayerReport> _reports = [];

    /// <summary>Creates the balancing of <paramref name="model"/> (a DiT with official parameter names) with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException">The options have problems (all are listed).</exception>
    public Ptq4DitBalancing(nn.Module model, Ptq4DitOptions? options = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Options = options ?? new Ptq4DitOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new ArgumentException(string.Join(" ", problems), nameof(options));
    }

    /// <summary>The model that is balanced.</summary>
    public nn.Module Model { get; }

    /// <summary>The options.</summary>
    public Ptq4DitOptions Options { get; }

    /// <summary>Whether the factors are folded into the model now (also after <see cref="Dispose"/>, which keeps them).</summary>
    public bool IsApplied => _applied;

    /// <summary>What the fold changed (null before <see cref="Apply"/>, after <see cref="Undo"/> and after <see cref="Dispose"/>).</summary>
    public BalancingFold? Fold => _fold;

    /// <summary>Per balanced layer, what SSC found (empty before <see cref="Apply"/>).</summary>
    public IReadOnlyList<Ptq4DitLayerReport> Reports => _reports;

    /// <summary>Whether <paramref name="layerName"/> is a layer these options balance.</summary>
    public bool Balances(string layerName)
    {
        var kind = DiTReparameterization.KindOf(layerName);
        return kind != BalancedLayers.None && (Options.Layers & kind) != 0;
    }

    /// <summary>
    /// Computes the balancing factors of every layer of <paramref name="statistics"/> that <see cref="Balances"/> from those
    /// statistics (per-step channel extremes for SSC, else the overall channel maxima) and the layer's current weight, and
    /// folds them all into <see cref="Model"/>. The statistics must be those of the unfolded model.
    /// </summary>
    /// <exception cref="InvalidOperationException">Already applied.</exception>
    /// <exception cref="CalibrationException">No layer to balance, or a balanced layer saw no input.</exception>
    public void Apply(CalibrationResult statistics, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        if (_applied) throw new InvalidOperationException("PTQ4DiT's balancing is already folded into the model: Undo() first.");
        var log = logger ?? NullLogger.Instance;
        var weights = Model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var layers = statistics.Layers.Values.Where(s => Balances(s.LayerName)).OrderBy(s => s.LayerName, StringComparer.Ordinal).ToList();
        if (layers.Count == 0)
            throw new CalibrationException($"PTQ4DiT found no layer to balance ({Options.Layers}) among the calibrated layers: {string.Join(", ", statistics.Layers.Keys.Take(12))}.");
        var factors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var reports = new List<Ptq4DitLayerReport>();
        try
        {
            foreach (var stats in layers)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (stats is not { HasData: true, ChannelAbsMax: not null })
                    throw new CalibrationException($"layer '{stats.LayerName}': PTQ4DiT needs its input saliences, but the layer saw no calibration input.");
                if (!weights.TryGetValue(stats.LayerName + ".weight", out var weight))
                    throw new CalibrationException($"layer '{stats.LayerName}' was calibrated but is not in the balanced model ({Model.GetType().Name}).");
                using var scope = torch.NewDisposeScope();
                var sW = SalienceBalancing.WeightSalience(weight);
                Tensor sX = stats.ChannelAbsMax;
                IReadOnlyList<int> steps = [];
                IReadOnlyList<double> rho = [], eta = [];
                if (Options.SalienceCalibration && stats.StepChannelAbsMax() is { } perStep)
                {
                    var rows = perStep.AbsMax; // owned by this iteration's scope
                    var calibrated = SpearmanCalibration.Calibrate(rows, sW.to(rows.device));
                    (sX, steps, rho, eta) = (calibrated.Salience, perStep.Steps, calibrated.Rho, calibrated.Eta);
                }
                var b = SalienceBalancing.Factors(sX, sW.to(sX.device), Options.SalienceFloor).to(weight.device);
                factors[stats.LayerName] = b.DetachFromDisposeScope();
                reports.Add(new Ptq4DitLayerReport(stats.LayerName, steps, rho, eta, b.min().item<float>(), b.max().item<float>()));
            }
            _fold = DiTReparameterization.Fold(Model, factors);
            _applied = true;
        }
        finally
        {
            foreach (var b in factors.Values) b.Dispose();
        }
        _reports = reports;
        foreach (var r in reports)
            log.LogDebug("PTQ4DiT {Layer}: b in [{Min:G3}, {Max:G3}]{Ssc}", r.Layer, r.MinFactor, r.MaxFactor,
                r.Rho.Count > 0 ? $", ρ_t in [{r.Rho.Min():F3}, {r.Rho.Max():F3}] over {r.Rho.Count} steps" : "");
        log.LogInformation("PTQ4DiT: {Count} layers balanced ({Kind}, {Ssc}) and folded offline", reports.Count, Options.Layers,
            Options.SalienceCalibration ? "Spearman-calibrated salience" : "salience = max over all calibration data");
    }

    /// <summary>Puts the model's original parameters back (restore the quantized layers first).</summary>
    /// <exception cref="InvalidOperationException">Not applied, or disposed.</exception>
    public void Undo()
    {
        var fold = _fold ?? throw new InvalidOperationException(_applied
            ? "PTQ4DiT's balancing was disposed: the copies of the original parameters are gone, so it cannot be undone."
            : "PTQ4DiT's balancing is not folded into the model: nothing to undo.");
        fold.Undo();
        _fold = null;
        _applied = false;
    }

    /// <summary>Frees the copies of the original parameters; the model keeps the folded ones.</summary>
    public void Dispose()
    {
        _fold?.Dispose();
        _fold = null;
    }
}
