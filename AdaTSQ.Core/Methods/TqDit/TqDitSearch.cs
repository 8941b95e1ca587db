using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>What TQ-DiT's search found: one result per layer, and the TGQ groups as step ranges.</summary>
/// <param name="Layers">Per-layer steps and errors.</param>
/// <param name="Groups">The TGQ groups as inclusive sampling-step ranges (group 0 first).</param>
/// <param name="Rows">Calibration rows used per layer.</param>
/// <param name="Elapsed">Time taken (replay and search).</param>
public sealed record TqDitReport(IReadOnlyList<TqDitLayerResult> Layers, IReadOnlyList<(int FirstStep, int LastStep)> Groups, long Rows, TimeSpan Elapsed);

/// <summary>
/// TQ-DiT's search as the pipeline's policy search (<c>UseTqDit</c> plugs it in); it runs after the quantize stage, which
/// stored every weight at its initial per-tensor steps (<see cref="TqDitQuantizer"/>).
/// <list type="number">
/// <item>Gradients. Every recorded call (<see cref="TqDitCalibrationCalls"/>) is replayed with autograd, every selected layer's
/// weight quantized at its initial steps and its input not quantized (rounding has zero gradient), with
/// <c>L = mean((ε_q − ε_fp)²)</c> against the recorded full-precision output. Each layer's output gets a zero probe added,
/// whose gradient is <c>g = ∂L/∂O</c>; its input rows and g are kept (<see cref="TqDitOptions.RowsPerCall"/> per call).
/// The reference code's loss (a KL between two identical full-precision outputs) has zero gradient, so this loss replaces it.</item>
/// <item>Search. Each layer's steps are searched on those rows (<see cref="TqDitLayerSearch"/>), the activation steps per TGQ group.</item>
/// <item>The chosen steps become the layers' weight versions and static input ranges (per group of steps, and overall); with
/// <see cref="TqDitOptions.PostGeluMultiRegion"/>, fc2's input steps become its MRQ input quantizer (<see cref="TqDitPostGeluQuantizer"/>).</item>
/// </list>
/// </summary>
public sealed class TqDitSearch : IPolicySearch
{
    private readonly TqDitCalibrationCalls _calls;

    /// <summary>Creates the search over <paramref name="calls"/> (owned by the caller) with <paramref name="options"/>.</summary>
    public TqDitSearch(TqDitOptions options, TqDitCalibrationCalls calls)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        _calls = calls ?? throw new ArgumentNullException(nameof(calls));
    }

    /// <summary>The options in use.</summary>
    public TqDitOptions Options { get; }

    /// <inheritdoc />
    public string Name => "TQ-DiT";

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var p = Options.FindProblems().ToList();
        if (weightTemplate is not { IsEnabled: true })
            p.Add("UseTqDit needs quantized weights: call Weights(bits) (TQ-DiT stores per-tensor steps as a symmetric per-channel spec).");
        else if (weightTemplate.Granularity != QuantGranularity.PerChannel || !weightTemplate.Symmetric || weightTemplate.ClipRatio != 1.0)
            p.Add($"UseTqDit takes Weights(bits) with the default symmetric per-channel spec (its steps are per tensor, per qkv part, and searched): got {weightTemplate}.");
        if (activationTemplate is { IsEnabled: true } a && (a.Dynamic || a.Granularity != QuantGranularity.PerTensor || !a.Symmetric || a.ClipRatio != 1.0))
            p.Add($"UseTqDit quantizes activations with static per-tensor symmetric steps: call Activations(bits, dynamic: false), got {a}.");
        if (_calls.Count == 0) p.Add("UseTqDit has no recorded calibration calls.");
        return p;
    }

    /// <inheritdoc />
    public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate) =>
        new StaticTimestepPolicy(new LayerQuantConfig(weightTemplate ?? QuantSpec.FullPrecision, activationTemplate ?? QuantSpec.FullPrecision));

    /// <inheritdoc />
    public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var watch = Stopwatch.StartNew();
        var wSpec = context.WeightTemplate ?? throw new InvalidOperationException("TQ-DiT needs a weight spec.");
        var aSpec = context.ActivationTemplate ?? QuantSpec.FullPrecision;
        var layers = context.Layers;
        int stepCount = _calls.Calls.Max(c => c.Step.StepCount);
        int groups = Math.Min(Options.TimestepGroups, stepCount);
        var ranges = Enumerable.Range(0, groups).Select(k =>
        {
            var steps = Enumerable.Range(0, stepCount).Where(i => TqDitOptions.GroupOf(i, stepCount, groups) == k).ToList();
            return (First: steps.Min(), Last: steps.Max());
        }).ToList();

        var data = Capture(layers, wSpec, stepCount, groups, progress, cancellationToken);
        var results = new List<TqDitLayerResult>();
        long rows = 0;
        try
        {
            int done = 0;
            foreach (var layer in layers)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (xs, gs, grp) = data[layer.LayerName];
                using var scope = torch.NewDisposeScope();
                var x = torch.cat(xs, 0);
                var g = torch.cat(gs, 0);
                rows = x.shape[0];
                var weight = layer.SmoothedWeight();
                bool mrq = Options.PostGeluMultiRegion && aSpec.IsEnabled && TqDitPostGeluQuantizer.AppliesTo(layer.LayerName);
                var r = TqDitLayerSearch.Search(layer.LayerName, weight, layer.Bias, x, g, grp.ToArray(), groups,
                    TqDitQuantizer.PartsOf(layer.LayerName, layer.OutFeatures), wSpec.Bits, aSpec.Bits, Options, cancellationToken, postGeluMultiRegion: mrq);
                layer.SetWeightVersion(TqDitQuantizer.WithSteps(weight, wSpec, r.WeightSteps));
                if (mrq)
                {
                    // MRQ after GELU: the layer's input quantizer, with the positive step of each group (it takes the place of the
                    // static min/max range the quantize stage set, which stays unused).
                    layer.SetInputQuantizer(new TqDitPostGeluQuantizer(layer.LayerName, aSpec.Bits, r.OverallActivationStep,
                        groups > 1 ? Enumerable.Range(0, groups).Select(k => (ranges[k].First, ranges[k].Last, r.ActivationSteps[k])) : []));
                }
                else if (aSpec.IsEnabled)
                {
                    layer.SetStaticInputRange(aSpec, -r.OverallActivationStep * aSpec.QMax, r.OverallActivationStep * aSpec.QMax);
                    if (groups > 1)
                        for (int k = 0; k < groups; k++)
                            layer.SetStaticInputRange(aSpec, -r.ActivationSteps[k] * aSpec.QMax, r.ActivationSteps[k] * aSpec.QMax, ranges[k].First, ranges[k].Last);
                }
                results.Add(r);
                context.Logger.LogDebug("TQ-DiT {Layer}: weight steps {W}, activation steps {A}; weighted error {E0:G3} → {E1:G3}",
                    layer.LayerName, string.Join("/", r.WeightSteps.Select(s => s.ToString("G3"))), string.Join("/", r.ActivationSteps.Select(s => s.ToString("G3"))), r.InitialError, r.FinalError);
                progress?.Report(new QuantizationProgress("tqdit-search", ++done, layers.Count, layer.LayerName));
            }
        }
        finally
        {
            foreach (var (xs, gs, _) in data.Values)
                foreach (var t in xs.Concat(gs)) t.Dispose();
        }
        watch.Stop();
        context.Logger.LogInformation("TQ-DiT searched {Layers} layers on {Rows} rows each ({Groups} timestep groups) in {Seconds:F1} s",
            layers.Count, rows, groups, watch.Elapsed.TotalSeconds);
        return new PolicySearchOutcome(new StaticTimestepPolicy(new LayerQuantConfig(wSpec, aSpec)),
            new TqDitReport(results, ranges.Select(r => (r.First, r.Last)).ToList(), rows, watch.Elapsed));
    }

    // Replays every call with autograd, weights at their initial steps and inputs unquantized, and keeps each layer's
    // sampled input rows and the loss gradient at its output for the same rows, with each row's TGQ group.
    private Dictionary<string, (List<Tensor> X, List<Tensor> G, List<int> Groups)> Capture(IReadOnlyList<QuantLinear> layers, QuantSpec wSpec,
        int stepCount, int groups, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        var data = layers.ToDictionary(l => l.LayerName, _ => (X: new List<Tensor>(), G: new List<Tensor>(), Groups: new List<int>()));
        var weightOnly = new StaticTimestepPolicy(new LayerQuantConfig(wSpec, QuantSpec.FullPrecision));
        var savedPolicies = layers.Select(l => l.Policy).ToList();
        var probes = new List<(QuantLinear Layer, Tensor Probe, Tensor Rows)>();
        var hooks = new List<nn.HookableModule<Func<nn.Module<Tensor, Tensor>, Tensor, Tensor>, Func<nn.Module<Tensor, Tensor>, Tensor, Tensor, Tensor>>.HookRemover>();
        var frozen = _calls.Module?.parameters().Where(q => q.requires_grad).ToList() ?? [];
        using var generator = new Generator((ulong)Options.Seed);
        int callIndex = 0;
        TimestepInfo current = default;
        try
        {
            foreach (var l in layers) l.Policy = weightOnly;
            // Only the probes need gradients: the model's parameters are left without .grad.
            foreach (var q in frozen) q.requires_grad = false;
            foreach (var layer in layers)
            {
                var captured = layer;
                hooks.Add(layer.register_forward_hook((module, input, output) =>
                {
                    // A zero probe added to the output: its gradient is ∂L/∂O. Owned here, not by the model's dispose scopes.
                    var probe = torch.zeros_like(output, requires_grad: true).DetachFromDisposeScope();
                    var flat = input.detach().reshape(-1, input.shape[^1]);
                    long n = flat.shape[0], keep = Math.Min(n, Options.RowsPerCall);
                    var rows = torch.randperm(n, generator: generator).narrow(0, 0, keep).to(flat.device).DetachFromDisposeScope();
                    var d = data[captured.LayerName];
                    d.X.Add(flat.index_select(0, rows).to(ScalarType.Float32).DetachFromDisposeScope());
                    int group = TqDitOptions.GroupOf(current.StepIndex, stepCount, groups);
                    for (long i = 0; i < keep; i++) d.Groups.Add(group);
                    probes.Add((captured, probe, rows));
                    return output + probe;
                }));
            }
            foreach (var call in _calls.Calls)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (call.Step.StepCount != stepCount)
                    throw new Calibration.CalibrationException($"TQ-DiT's calls mix step counts ({call.Step.StepCount} and {stepCount}): record them with one sampler.");
                current = call.Step;
                using (var scope = torch.NewDisposeScope())
                using (var enableGrad = torch.enable_grad())
                using (TimestepContext.Enter(call.Step))
                {
                    var output = _calls.Model(call.X, call.T, call.Y);
                    var loss = (output - call.Reference).square().mean();
                    if (loss.requires_grad) loss.backward();
                }
                foreach (var (layer, probe, rows) in probes)
                {
                    using var scope = torch.NewDisposeScope();
                    var grad = probe.grad is { } gr ? gr.detach().reshape(-1, probe.shape[^1]).index_select(0, rows) : torch.zeros(rows.shape[0], probe.shape[^1]);
                    data[layer.LayerName].G.Add(grad.to(ScalarType.Float32).MoveToOuterDisposeScope().DetachFromDisposeScope());
                    probe.Dispose();
                    rows.Dispose();
                }
                probes.Clear();
                progress?.Report(new QuantizationProgress("tqdit-gradients", ++callIndex, _calls.Count));
            }
            foreach (var (name, d) in data)
                if (d.X.Count == 0) throw new Calibration.CalibrationException($"TQ-DiT: layer '{name}' saw no input while the calibration calls were replayed.");
            return data;
        }
        catch
        {
            foreach (var (xs, gs, _) in data.Values)
                foreach (var t in xs.Concat(gs)) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var h in hooks) h.remove();
            foreach (var (_, probe, rows) in probes)
            {
                probe.Dispose();
                rows.Dispose();
            }
            for (int i = 0; i < layers.Count; i++) layers[i].Policy = savedPolicies[i];
            foreach (var q in frozen) q.requires_grad = true;
        }
    }
}
