using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Sampling;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Calibration;

namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// Estimates the <see cref="TemporalFisher"/> of an ε-prediction diffusion model with autograd.
/// </summary>
/// <remarks>
/// <para>For each sampling step <c>k</c> of the diffusion's (respaced) schedule, with spaced
/// index <c>i = T−1−k</c>, model timestep <c>τ_i</c> and ᾱ_i:</para>
/// <code>
/// x_t = √ᾱ_i · x0 + √(1−ᾱ_i) · ε,     ε ~ N(0, I)
/// ℓ   = mean over (C, H, W) of (ε_θ(x_t, τ_i, y) − ε)²     (the first C output channels)
/// F_{k,l} = (1/S) Σ_s ‖∂ℓ_s / ∂W_l‖²_F
/// </code>
/// <para>over <c>S</c> = <see cref="TemporalFisherOptions.SamplesPerStep"/> samples (x0, y) drawn without
/// replacement from the given data (real training images, or the full-precision model's own samples
/// for data-free use). This is the trace over the layer of the diagonal empirical Fisher. The model's
/// layers must be in full precision (the estimate is made before quantization).</para>
/// <para>With <see cref="FisherLossSpace.CleanImage"/> the values are multiplied by <c>((1−ᾱ_i)/ᾱ_i)²</c>: the
/// Fisher of the clean-image error x̂0 − x0 implied by ε̂ instead of the ε loss.</para>
/// </remarks>
public sealed class TemporalFisherEstimator
{
    private readonly Denoiser _model;
    private readonly GaussianDiffusion _diffusion;
    private readonly Tensor _x0;
    private readonly Tensor _labels;
    private readonly ILogger _logger;

    /// <summary>Creates the estimator. The data tensors stay owned by the caller and must outlive it.</summary>
    /// <param name="model">The model (must be differentiable: called with grad enabled).</param>
    /// <param name="diffusion">The schedule whose sampling steps are estimated (the sampler's own).</param>
    /// <param name="x0">Clean samples <c>[N, C, H, W]</c> in the model's data range.</param>
    /// <param name="labels">Their labels <c>[N]</c> (int64).</param>
    /// <param name="options">Sample counts and seed.</param>
    /// <param name="logger">Logs the time taken.</param>
    public TemporalFisherEstimator(Denoiser model, GaussianDiffusion diffusion, Tensor x0, Tensor labels, TemporalFisherOptions? options = null, ILogger? logger = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _diffusion = diffusion ?? throw new ArgumentNullException(nameof(diffusion));
        ArgumentNullException.ThrowIfNull(x0);
        ArgumentNullException.ThrowIfNull(labels);
        Options = options ?? new TemporalFisherOptions();
        var problems = Options.FindProblems().ToList();
        if (x0.Dimensions < 2 || x0.shape[0] == 0) problems.Add($"x0 has shape [{string.Join(", ", x0.shape)}]: expected a non-empty batch [N, C, ...].");
        if (labels.Dimensions != 1 || labels.shape[0] != (x0.Dimensions > 0 ? x0.shape[0] : -1))
            problems.Add($"labels have shape [{string.Join(", ", labels.shape)}], expected [{(x0.Dimensions > 0 ? x0.shape[0] : 0)}].");
        else if (labels.dtype != ScalarType.Int64) problems.Add($"labels are {labels.dtype}, expected Int64.");
        if (!x0.is_floating_point()) problems.Add($"x0 is {x0.dtype}, expected a floating-point tensor.");
        if (problems.Count > 0) throw new CalibrationException("invalid temporal Fisher estimate: " + string.Join(" ", problems));
        _x0 = x0;
        _labels = labels;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>The options in use.</summary>
    public TemporalFisherOptions Options { get; }

    /// <summary>Estimates F for the weights of <paramref name="layers"/> (which must be in full precision).</summary>
    public TemporalFisher Estimate(IReadOnlyList<IQuantizableLayer> layers, IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Estimate(layers.Select(l => (l.LayerName, l.Weight)).ToList(), progress, cancellationToken);

    /// <summary>Estimates F for the named weight tensors (parameters of the model).</summary>
    public TemporalFisher Estimate(IReadOnlyList<(string Name, Tensor Weight)> weights, IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count == 0) throw new CalibrationException("the temporal Fisher estimate needs at least one weight.");
        var watch = Stopwatch.StartNew();
        int steps = _diffusion.NumTimesteps, layers = weights.Count;
        long n = _x0.shape[0], c = _x0.shape[1];
        int perStep = Options.SamplesPerStep;
        var values = new double[steps, layers];
        var infos = new TimestepInfo[steps];
        var tensors = weights.Select(w => w.Weight).ToArray();
        var wasRequired = tensors.Select(t => t.requires_grad).ToArray();
        try
        {
            foreach (var t in tensors) t.requires_grad_(true);
            using var grad = torch.enable_grad();
            for (int k = 0; k < steps; k++)
            {
                int i = steps - 1 - k;
                infos[k] = new TimestepInfo(k, steps, _diffusion.TimestepMap[i]);
                using var stepScope = torch.NewDisposeScope();
                using var generator = new Generator((ulong)(Options.Seed * 1_000_003 + k), _x0.device);
                // Samples without replacement (cycling through a fresh permutation when more are asked than exist).
                var order = Enumerable.Range(0, (perStep + (int)n - 1) / (int)n)
                    .Select(_ => torch.randperm(n, generator: generator, device: _x0.device)).ToList();
                var index = torch.cat(order)[..perStep];
                var x0 = _x0.index_select(0, index).detach();
                var y = _labels.index_select(0, index);
                var eps = torch.randn(x0.shape, generator: generator, device: x0.device, dtype: x0.dtype);
                var spaced = torch.full(perStep, i, dtype: ScalarType.Int64, device: x0.device);
                var xt = _diffusion.QSample(x0, spaced, eps);
                using var context = TimestepContext.Enter(infos[k]);
                for (int s = 0; s < perStep; s += Options.MicroBatch)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var batchScope = torch.NewDisposeScope();
                    int m = Math.Min(Options.MicroBatch, perStep - s);
                    var xb = xt[s..(s + m)];
                    var output = _model(xb, torch.full(m, infos[k].Timestep, dtype: ScalarType.Float32, device: xb.device), y[s..(s + m)]);
                    if (output.shape[0] != m || output.shape[1] < c)
                        throw new CalibrationException($"the model returned [{string.Join(", ", output.shape)}] for an input of [{string.Join(", ", xb.shape)}].");
                    var loss = (output[.., ..(int)c] - eps[s..(s + m)]).square().mean();
                    var grads = torch.autograd.grad([loss], tensors, allow_unused: true);
                    for (int l = 0; l < layers; l++)
                    {
                        if (grads[l] is null || grads[l].IsInvalid) continue;
                        values[k, l] += (double)m * m * grads[l].to(ScalarType.Float64).square().sum().item<double>();
                    }
                }
                // In clean-image space ℓ_x0 = ((1−ᾱ)/ᾱ)·ℓ_ε, so the squared gradient scales by its square.
                double spaceFactor = Options.LossSpace == FisherLossSpace.CleanImage
                    ? Math.Pow((1 - _diffusion.AlphasCumprod[i]) / _diffusion.AlphasCumprod[i], 2)
                    : 1.0;
                for (int l = 0; l < layers; l++)
                {
                    values[k, l] *= spaceFactor / perStep;
                    if (!double.IsFinite(values[k, l]))
                        throw new CalibrationException($"layer '{weights[l].Name}': the Fisher estimate at {infos[k]} is not finite.");
                }
                progress?.Report(new QuantizationProgress("fisher", k + 1, steps, infos[k].ToString()));
            }
        }
        finally
        {
            for (int l = 0; l < layers; l++) tensors[l].requires_grad_(wasRequired[l]);
        }
        _logger.LogInformation("Temporal Fisher of {Layers} layers over {Steps} steps ({Samples} samples each) in {Seconds:F1} s",
            layers, steps, perStep, watch.Elapsed.TotalSeconds);
        return new TemporalFisher(infos, weights.Select(w => w.Name).ToArray(), values, perStep);
    }
}
