using AdaTSQ.Abstractions;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// ViDiT-Q's metric-decoupled mixed precision (Zhao et al., ICLR 2025, arXiv 2406.02540) as the pipeline's policy search
/// (<see cref="IPolicySearch"/>). Every quantized layer is quantized at a low config (the builder's Weights/Activations)
/// and a high one (<see cref="ViDiTQMixedPrecisionOptions.HighWeightBits"/>/<see cref="ViDiTQMixedPrecisionOptions.HighActivationBits"/>).
/// The sensitivity of layer l is measured as ViDiT-Q's code does, by quantizing l alone (every other layer in full
/// precision) and sampling: the final samples of <see cref="SearchTrajectories"/> are compared with the full-precision
/// ones by each metric separately. <see cref="MixedPrecisionAllocation"/> then gives the high config to the layers each
/// metric finds most sensitive, under the budget. Costs one sampling run of the trajectories per layer, plus one.
/// </summary>
public sealed class MetricDecoupledMixedPrecision : IPolicySearch
{
    /// <summary>Creates the search (does not own <paramref name="trajectories"/>).</summary>
    public MetricDecoupledMixedPrecision(SearchTrajectories trajectories, ViDiTQMixedPrecisionOptions options)
    {
        Trajectories = trajectories ?? throw new ArgumentNullException(nameof(trajectories));
        Options = options ?? throw new ArgumentNullException(nameof(options));
    }

    /// <summary>The noise, labels, model and sampler the sensitivities are measured on.</summary>
    public SearchTrajectories Trajectories { get; }

    /// <summary>The options.</summary>
    public ViDiTQMixedPrecisionOptions Options { get; }

    /// <inheritdoc />
    public string Name => "ViDiT-Q metric-decoupled mixed precision";

    /// <summary>The low and high configs for the builder's templates.</summary>
    public (LayerQuantConfig Low, LayerQuantConfig High) Configs(QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var weight = weightTemplate ?? QuantSpec.FullPrecision;
        var activation = activationTemplate ?? QuantSpec.FullPrecision;
        var low = new LayerQuantConfig(weight, activation);
        var high = new LayerQuantConfig(weight.IsEnabled ? weight with { Bits = Options.HighWeightBits } : weight,
            activation.IsEnabled ? activation with { Bits = Math.Max(activation.Bits, Options.HighActivationBits) } : activation);
        return (low, high);
    }

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var p = Options.FindProblems().Select(x => $"ViDiT-Q mixed precision: {x}").ToList();
        if (weightTemplate is not { IsEnabled: true })
            p.Add("ViDiT-Q mixed precision varies the weight bits: call Weights(...) with the low bit-width.");
        else
        {
            if (Options.HighWeightBits <= weightTemplate.Bits)
                p.Add($"ViDiT-Q mixed precision: HighWeightBits {Options.HighWeightBits} must exceed the builder's weight bits {weightTemplate.Bits}.");
            if (Options.AverageWeightBits < weightTemplate.Bits)
                p.Add($"ViDiT-Q mixed precision: the budget of {Options.AverageWeightBits} average weight bits is below {weightTemplate.Bits}, the cost of every layer at the builder's weight bits.");
        }
        return p;
    }

    /// <inheritdoc />
    public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var (low, high) = Configs(weightTemplate, activationTemplate);
        return new MixedPrecisionSpacePolicy(layers, low, high);
    }

    /// <inheritdoc />
    public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var layers = context.Layers;
        var (low, high) = Configs(context.WeightTemplate, context.ActivationTemplate);
        var space = new MixedPrecisionSpacePolicy(layers.Select(l => l.LayerName).ToList(), low, high);
        var sensitivity = Options.Metrics.Select(_ => new double[layers.Count]).ToArray();
        var previous = layers.Select(l => l.Policy).ToArray();
        try
        {
            foreach (var layer in layers) layer.Policy = space;
            space.Assign(LayerQuantConfig.FullPrecision);
            using var reference = Sample(cancellationToken);
            for (int l = 0; l < layers.Count; l++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                space.Assign(LayerQuantConfig.FullPrecision, l, low);
                using var samples = Sample(cancellationToken);
                for (int m = 0; m < Options.Metrics.Count; m++)
                {
                    double score = Options.Metrics[m].Score(samples, reference);
                    if (!double.IsFinite(score) || score < 0)
                        throw new LayerQuantizationException(layers[l].LayerName, $"metric {Options.Metrics[m].Name} gave {score}, expected a finite value ≥ 0.");
                    sensitivity[m][l] = score;
                }
                progress?.Report(new QuantizationProgress("ViDiT-Q sensitivity", l + 1, layers.Count, layers[l].LayerName));
            }
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Policy = previous[i];
        }

        var parameters = layers.Select(l => l.InFeatures * l.OutFeatures).ToList();
        var promotions = MixedPrecisionAllocation.Allocate(sensitivity, parameters, low.Weight.Bits, high.Weight.Bits, Options.AverageWeightBits);
        double average = MixedPrecisionAllocation.AverageWeightBits(promotions, parameters, low.Weight.Bits, high.Weight.Bits);
        var overrides = promotions.ToDictionary(p => layers[p.Layer].LayerName, _ => high);
        var policy = new StaticTimestepPolicy(low, overrides);
        context.Logger.LogInformation("ViDiT-Q mixed precision: {Count} of {Layers} layers at {High}, the rest at {Low}; {Bits:F3} average weight bits (budget {Budget})",
            promotions.Count, layers.Count, high, low, average, Options.AverageWeightBits);
        var report = new MixedPrecisionResult(layers.Select(l => l.LayerName).ToList(), Options.Metrics.Select(m => m.Name).ToList(), sensitivity,
            promotions.Select(p => (layers[p.Layer].LayerName, Options.Metrics[p.Metric].Name)).ToList(), low, high, average, Options.AverageWeightBits);
        return new PolicySearchOutcome(policy, report);
    }

    // The final samples of every trajectory under the currently assigned configs (a new tensor).
    private Tensor Sample(CancellationToken cancellationToken)
    {
        using var noGrad = torch.no_grad();
        var sampler = Trajectories.Sampler;
        var x = Trajectories.Noise.alias();
        for (int s = 0; s < sampler.StepCount; s++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var next = sampler.Step(Trajectories.Model, x, Trajectories.Labels, s);
            x.Dispose();
            x = next;
        }
        return x;
    }
}
