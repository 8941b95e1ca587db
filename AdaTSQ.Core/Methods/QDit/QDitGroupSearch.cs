using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Interop;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Metrics;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// Q-DiT's automatic quantization granularity allocation (Chen et al., CVPR 2025, arXiv 2406.17343) as the pipeline's
/// policy search: every searched layer is quantized once per candidate group size (<see cref="GroupSizeSearchSpace"/>;
/// with <c>UseQDit</c>, by GPTQ), then <see cref="GroupSizeEvolution"/> picks one group size per layer under
/// <see cref="QDitOptions.Constraint"/>, scoring each candidate assignment by the end-to-end error of the denoising
/// trajectory: the MSE of its final samples against the full-precision ones from the same noise
/// (<see cref="SearchTrajectories"/>, as AdaTSQ's bit-width search measures it), where the paper uses FID. The result's
/// policy is static per layer; its report is a <see cref="QDitSearchResult"/>. Made by <c>UseQDit(...)</c>.
/// </summary>
public sealed class QDitGroupSearch : IPolicySearch
{
    private readonly nn.Module _model;

    /// <summary>Creates the search.</summary>
    /// <param name="model">The model being quantized (its linear layers' input dimensions decide which group sizes fit).</param>
    /// <param name="trajectories">What candidates are scored on (seeded noise, labels, a step-by-step sampler).</param>
    /// <param name="options">Candidates, constraint, evolution parameters, seed.</param>
    public QDitGroupSearch(nn.Module model, SearchTrajectories trajectories, QDitOptions options)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        Trajectories = trajectories ?? throw new ArgumentNullException(nameof(trajectories));
        Options = options ?? throw new ArgumentNullException(nameof(options));
    }

    /// <summary>What candidates are scored on.</summary>
    public SearchTrajectories Trajectories { get; }

    /// <summary>The options.</summary>
    public QDitOptions Options { get; }

    /// <inheritdoc />
    public string Name => "Q-DiT group-size search, UseQDit(...)";

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate) => Problems(Options, weightTemplate, activationTemplate);

    /// <summary>The problems of <paramref name="options"/> with the builder's templates (shared with <see cref="FixedGroupSizes"/>).</summary>
    internal static IReadOnlyList<string> Problems(QDitOptions options, QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var p = options.FindProblems().ToList();
        if (weightTemplate is not { IsEnabled: true })
            p.Add("Q-DiT allocates weight group sizes: call Weights(bits) (per channel, or per group to set the reference group size).");
        else if (!options.GroupSizes.Contains(options.ReferenceFor(weightTemplate)))
            p.Add($"Q-DiT: the weight template's group size {weightTemplate.GroupSize} (the reference) is not among the candidates {{{string.Join(", ", options.GroupSizes)}}}.");
        if (activationTemplate is { IsEnabled: true, Dynamic: false })
            p.Add($"Q-DiT quantizes activations dynamically (ranges per sample at run time), but the activation template is static ({activationTemplate}): use Activations(bits).");
        return p;
    }

    /// <inheritdoc />
    /// <exception cref="QuantizationConfigurationException">A layer has no candidate group size that divides its input dimension, or the reference does not fit it.</exception>
    public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var inFeatures = ModelSurgery.FindLinears(_model).ToDictionary(l => l.Name, l => l.Layer.in_features, StringComparer.Ordinal);
        var k = layers.Select(n => inFeatures.TryGetValue(n, out long v) ? v
            : throw new QuantizationConfigurationException([$"Q-DiT: layer '{n}' is not a linear layer of the model given to UseQDit."])).ToList();
        return Space(layers, k, weightTemplate!, activationTemplate ?? QuantSpec.FullPrecision);
    }

    /// <inheritdoc />
    public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var watch = Stopwatch.StartNew();
        var layers = context.Layers;
        var weightTemplate = context.WeightTemplate!;
        var activationTemplate = context.ActivationTemplate ?? QuantSpec.FullPrecision;
        var space = Space(layers.Select(l => l.LayerName).ToList(), layers.Select(l => l.InFeatures).ToList(), weightTemplate, activationTemplate);
        var reference = ReferenceAssignment(space, weightTemplate);
        var previous = layers.Select(l => l.Policy).ToArray();
        var previousKernels = layers.Select(l => l.IntegerKernel).ToArray();
        using var kernel = Options.SearchOnIntegerKernels && Trajectories.Noise.device_type == DeviceType.CPU ? new IntegerLinearKernel() : null;
        Tensor? fp = null;
        long calls = 0;
        try
        {
            foreach (var layer in layers)
            {
                layer.Policy = space;
                layer.IntegerKernel ??= kernel;
            }
            space.AssignFullPrecision();
            var macs = MeasureMacs(layers);
            calls++;
            var cost = new GroupSizeCost(Options.Constraint, layers.Select(l => l.InFeatures).ToList(), macs, reference);
            fp = Sample(ref calls);
            var psnr = new Dictionary<string, double>(StringComparer.Ordinal);
            double Loss(IReadOnlyList<int> groups)
            {
                space.Assign(groups);
                using var x = Sample(ref calls);
                psnr[string.Join(",", groups)] = ImageMetrics.Psnr(x, fp);
                return ImageMetrics.Mse(x, fp);
            }
            var evolution = new GroupSizeEvolution(space.Choices, cost.IsLegal, Options, context.Logger);
            var found = evolution.Run(Loss, [reference], progress, cancellationToken);
            var referenceLoss = found.Losses.First(e => e.Candidate.SequenceEqual(reference)).Loss;
            var result = new QDitSearchResult(Assignment(space, found.Best), Assignment(space, reference), Options.Constraint, cost.Measure(found.Best), cost.Limit,
                found.BestLoss, psnr[string.Join(",", found.Best)], referenceLoss, psnr[string.Join(",", reference)], found.Evaluations, calls, Trajectories.Count,
                found.BestLossPerGeneration, watch.Elapsed) { IntegerKernelCalls = kernel?.IntegerCalls ?? 0 };
            context.Logger.LogInformation("Q-DiT group-size search done in {Seconds:F1} s ({Evaluations} assignments, {Calls} model calls): final PSNR {Psnr:F2} dB vs {Reference:F2} dB for uniform g{Group}; groups {Histogram}",
                result.WallTime.TotalSeconds, result.Evaluations, calls, result.FinalPsnr, result.ReferencePsnr, Options.ReferenceFor(weightTemplate), result.Assignment.Histogram());
            return new PolicySearchOutcome(result.Assignment.ToPolicy(weightTemplate, activationTemplate, Options), result);
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++)
            {
                layers[i].Policy = previous[i];
                layers[i].IntegerKernel = previousKernels[i];
            }
            fp?.Dispose();
            NativeMemory.Trim();
        }
    }

    /// <summary>
    /// A layer's candidate group sizes: those of <paramref name="options"/> that divide <paramref name="inFeatures"/> and are
    /// smaller (a group of K is per channel, 0), in the options' order without repeats.
    /// </summary>
    public static IReadOnlyList<int> ChoicesFor(QDitOptions options, long inFeatures)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.GroupSizes.Select(g => g == inFeatures ? 0 : g).Where(g => g == 0 || (g < inFeatures && inFeatures % g == 0)).Distinct().ToList();
    }

    private GroupSizeSearchSpace Space(IReadOnlyList<string> layers, IReadOnlyList<long> inFeatures, QuantSpec weightTemplate, QuantSpec activationTemplate)
    {
        int reference = Options.ReferenceFor(weightTemplate);
        var problems = new List<string>();
        var choices = new List<IReadOnlyList<int>>();
        for (int i = 0; i < layers.Count; i++)
        {
            var c = ChoicesFor(Options, inFeatures[i]);
            if (c.Count == 0) problems.Add($"Q-DiT: layer '{layers[i]}' (K = {inFeatures[i]}): none of the group sizes {{{string.Join(", ", Options.GroupSizes)}}} divides K; add 0 (per channel) or a divisor.");
            else if (!c.Contains(reference == inFeatures[i] ? 0 : reference))
                problems.Add($"Q-DiT: layer '{layers[i]}' (K = {inFeatures[i]}): the reference group size {reference} does not divide K; choose a reference that divides every searched layer's K.");
            choices.Add(c);
        }
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        return new GroupSizeSearchSpace(layers, choices, g => Options.ConfigFor(g, weightTemplate, activationTemplate));
    }

    private int[] ReferenceAssignment(GroupSizeSearchSpace space, QuantSpec weightTemplate)
    {
        int reference = Options.ReferenceFor(weightTemplate);
        return space.Choices.Select(c => c.Contains(reference) ? reference : 0).ToArray();
    }

    private static GroupSizeAssignment Assignment(GroupSizeSearchSpace space, IReadOnlyList<int> groups) =>
        new(space.Layers.Select((n, i) => (n, groups[i])).ToDictionary(p => p.n, p => p.Item2, StringComparer.Ordinal));

    /// <summary>All steps of the search trajectories under the assigned configs; the final samples.</summary>
    private Tensor Sample(ref long calls)
    {
        var sampler = Trajectories.Sampler;
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = Trajectories.Noise;
        for (int s = 0; s < sampler.StepCount; s++)
        {
            var next = sampler.Step(Trajectories.Model, x, Trajectories.Labels, s);
            if (s > 0) x.Dispose();
            x = next;
            calls++;
        }
        return x.MoveToOuterDisposeScope();  // StepCount ≥ 1 (SearchTrajectories checks it), so x is not the noise
    }

    /// <summary>Each layer's multiply-accumulates per sample, from one full-precision call on one sample at the first step.</summary>
    private double[] MeasureMacs(IReadOnlyList<QuantLinear> layers)
    {
        var rows = new double[layers.Count];
        var recorder = new RowRecorder(layers, rows);
        var observers = layers.Select(l => l.Observer).ToArray();
        try
        {
            foreach (var l in layers) l.Observer = recorder;
            using var noGrad = torch.no_grad();
            using var x = Trajectories.Noise[..1];
            using var y = Trajectories.Labels[..1];
            using var _ = Trajectories.Sampler.Step(Trajectories.Model, x, y, 0);
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Observer = observers[i];
        }
        return rows.Select((r, i) => r * layers[i].InFeatures * layers[i].OutFeatures).ToArray();
    }

    private sealed class RowRecorder(IReadOnlyList<QuantLinear> layers, double[] rows) : ILayerInputObserver
    {
        public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
        {
            for (int i = 0; i < layers.Count; i++)
                if (ReferenceEquals(layers[i], layer)) rows[i] += input.numel() / (double)layer.InFeatures;
        }
    }
}
