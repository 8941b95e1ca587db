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
/// index <c>i = T−1−k</c>, model timestep <c>τ_i</c> and ᾱ_i, and a noisy input x_t with target noise ε
/// (see below):</para>
/// <code>
/// ℓ   = mean over (C, H, W) of (ε_θ(x_t, τ_i, y) − ε)²     (the first C output channels; conditional pass)
/// F_{k,l} = (1/S) Σ_s ‖∂ℓ_s / ∂W_l‖²_F
/// </code>
/// <para>over <c>S</c> = <see cref="TemporalFisherOptions.SamplesPerStep"/> samples. This is the trace over the
/// layer of the diagonal empirical Fisher. The model's layers must be in full precision (the estimate is made
/// before quantization).</para>
/// <para><see cref="FisherInputs.QSample"/> (the constructor with x0): <c>x_t = √ᾱ_i · x0 + √(1−ᾱ_i) · ε</c>,
/// <c>ε ~ N(0, I)</c>, the samples (x0, y) drawn without replacement from the given data (real training images, or
/// the full-precision model's own samples for data-free use).</para>
/// <para><see cref="FisherInputs.Trajectory"/> (the constructor with a sampler and noise): the full-precision sampler
/// is run once from the given noise (no gradients) and records the sample x_t it visits at every step and its end
/// point x0* (the final sample). At step k the target is the noise that the forward process would have added to x0*
/// to reach x_t, <c>ε* = (x_t − √ᾱ_i · x0*) / √(1−ᾱ_i)</c>, so that (x0*, ε*) is an ordinary training pair whose noisy
/// input is exactly the sampler's x_t. Equivalently <c>ε_θ − ε* = √(ᾱ_i/(1−ᾱ_i)) · (x0* − x̂0_θ)</c>: the residual is
/// how far the model's clean-image prediction at x_t is from where the trajectory actually ends, scaled to ε units.
/// Why this target: the model's own ε at x_t as target gives a zero residual (with guidance, only the
/// conditional/guided difference) and so no Fisher at all; fresh noise added to x0* is the q-sample estimate on
/// generated data again, at inputs the sampler never visits. Note: the last DDIM step (ᾱ_prev = 1) ends exactly at
/// its own x̂0 (clipped, if the sampler clips), so without guidance and without clipping its residual, and that
/// step's Fisher, are 0 up to float rounding (α at the floor). The S samples of a step are drawn
/// without replacement from the recorded trajectories (labels are the trajectories' own).</para>
/// <para>With <see cref="FisherLossSpace.CleanImage"/> the values are multiplied by <c>((1−ᾱ_i)/ᾱ_i)²</c>: the
/// Fisher of the clean-image error x̂0 − x0 implied by ε̂ instead of the ε loss (x0* in place of x0 for
/// trajectories).</para>
/// </remarks>
public sealed class TemporalFisherEstimator
{
    private readonly Denoiser _model;
    private readonly GaussianDiffusion _diffusion;
    private readonly Tensor _data;            // x0 (QSample) or the trajectories' initial noise (Trajectory)
    private readonly Tensor _labels;
    private readonly TrajectorySampler? _sampler;
    private readonly SamplingOptions? _sampling;
    private readonly ILogger _logger;

    /// <summary>Creates an estimator on forward-process samples of clean data (<see cref="FisherInputs.QSample"/>). The data tensors stay owned by the caller and must outlive it.</summary>
    /// <param name="model">The model (must be differentiable: called with grad enabled).</param>
    /// <param name="diffusion">The schedule whose sampling steps are estimated (the sampler's own).</param>
    /// <param name="x0">Clean samples <c>[N, C, H, W]</c> in the model's data range.</param>
    /// <param name="labels">Their labels <c>[N]</c> (int64).</param>
    /// <param name="options">Sample counts and seed.</param>
    /// <param name="logger">Logs the time taken.</param>
    public TemporalFisherEstimator(Denoiser model, GaussianDiffusion diffusion, Tensor x0, Tensor labels, TemporalFisherOptions? options = null, ILogger? logger = null)
        : this(model, diffusion, x0, labels, null, null, options, logger)
    {
    }

    /// <summary>
    /// Creates an estimator on the full-precision sampler's own trajectories (<see cref="FisherInputs.Trajectory"/>): each
    /// <c>Estimate</c> call first runs <paramref name="sampler"/> on <paramref name="noise"/> (all trajectories in one batch). The tensors stay
    /// owned by the caller and must outlive the estimator.
    /// </summary>
    /// <param name="model">The model (must be differentiable: called with grad enabled).</param>
    /// <param name="diffusion">The schedule of the sampler (its steps must be this schedule's, else <see cref="CalibrationException"/>).</param>
    /// <param name="sampler">Runs a whole trajectory batch and calls <see cref="SamplingOptions.OnStep"/> at every step (e.g. <see cref="DiffusionSampler.SampleDdim"/> over <paramref name="diffusion"/>).</param>
    /// <param name="noise">The initial noise x_T <c>[N, C, H, W]</c>.</param>
    /// <param name="labels">The trajectories' labels <c>[N]</c> (int64).</param>
    /// <param name="sampling">How the sampler runs (guidance, clipping, η, its own seed). Its <c>OnStep</c> and <c>Progress</c> are replaced.</param>
    /// <param name="options">Sample counts and seed (the seed draws the trajectories used at each step).</param>
    /// <param name="logger">Logs the time taken.</param>
    public TemporalFisherEstimator(Denoiser model, GaussianDiffusion diffusion, TrajectorySampler sampler, Tensor noise, Tensor labels, SamplingOptions sampling,
        TemporalFisherOptions? options = null, ILogger? logger = null)
        : this(model, diffusion, noise, labels, sampler ?? throw new ArgumentNullException(nameof(sampler)), sampling ?? throw new ArgumentNullException(nameof(sampling)), options, logger)
    {
    }

    private TemporalFisherEstimator(Denoiser model, GaussianDiffusion diffusion, Tensor data, Tensor labels, TrajectorySampler? sampler, SamplingOptions? sampling,
        TemporalFisherOptions? options, ILogger? logger)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _diffusion = diffusion ?? throw new ArgumentNullException(nameof(diffusion));
        ArgumentNullException.ThrowIfNull(data, sampler is null ? "x0" : "noise");
        ArgumentNullException.ThrowIfNull(labels);
        Options = options ?? new TemporalFisherOptions();
        string name = sampler is null ? "x0" : "noise";
        var problems = Options.FindProblems().ToList();
        if (data.Dimensions < 2 || data.shape[0] == 0) problems.Add($"{name} has shape [{string.Join(", ", data.shape)}]: expected a non-empty batch [N, C, ...].");
        if (labels.Dimensions != 1 || labels.shape[0] != (data.Dimensions > 0 ? data.shape[0] : -1))
            problems.Add($"labels have shape [{string.Join(", ", labels.shape)}], expected [{(data.Dimensions > 0 ? data.shape[0] : 0)}].");
        else if (labels.dtype != ScalarType.Int64) problems.Add($"labels are {labels.dtype}, expected Int64.");
        if (!data.is_floating_point()) problems.Add($"{name} is {data.dtype}, expected a floating-point tensor.");
        if (problems.Count > 0) throw new CalibrationException("invalid temporal Fisher estimate: " + string.Join(" ", problems));
        _data = data;
        _labels = labels;
        _sampler = sampler;
        _sampling = sampling;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>The options in use.</summary>
    public TemporalFisherOptions Options { get; }

    /// <summary>Where the loss is taken: forward-process samples of x0, or the sampler's own trajectories (set by the constructor used).</summary>
    public FisherInputs Inputs => _sampler is null ? FisherInputs.QSample : FisherInputs.Trajectory;

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
        long n = _data.shape[0], c = _data.shape[1];
        int perStep = Options.SamplesPerStep;
        var values = new double[steps, layers];
        var infos = new TimestepInfo[steps];
        var tensors = weights.Select(w => w.Weight).ToArray();
        var wasRequired = tensors.Select(t => t.requires_grad).ToArray();
        // Trajectory inputs: x_t of every step [T, N, C, H, W] and the targets ε* (made before any gradient is needed).
        Tensor? trajectoryInputs = null, trajectoryTargets = null;
        if (_sampler is not null) (trajectoryInputs, trajectoryTargets) = RunTrajectories(cancellationToken);
        try
        {
            foreach (var t in tensors) t.requires_grad_(true);
            using var grad = torch.enable_grad();
            for (int k = 0; k < steps; k++)
            {
                int i = steps - 1 - k;
                infos[k] = new TimestepInfo(k, steps, _diffusion.TimestepMap[i]);
                using var stepScope = torch.NewDisposeScope();
                using var generator = new Generator((ulong)(Options.Seed * 1_000_003 + k), _data.device);
                // Samples without replacement (cycling through a fresh permutation when more are asked than exist).
                var order = Enumerable.Range(0, (perStep + (int)n - 1) / (int)n)
                    .Select(_ => torch.randperm(n, generator: generator, device: _data.device)).ToList();
                var index = torch.cat(order)[..perStep];
                var y = _labels.index_select(0, index);
                Tensor xt, eps;
                if (trajectoryInputs is null)
                {
                    var x0 = _data.index_select(0, index).detach();
                    eps = torch.randn(x0.shape, generator: generator, device: x0.device, dtype: x0.dtype);
                    var spaced = torch.full(perStep, i, dtype: ScalarType.Int64, device: x0.device);
                    xt = _diffusion.QSample(x0, spaced, eps);
                }
                else
                {
                    xt = trajectoryInputs[k].index_select(0, index);
                    eps = trajectoryTargets![k].index_select(0, index);
                }
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
            trajectoryInputs?.Dispose();
            trajectoryTargets?.Dispose();
        }
        _logger.LogInformation("Temporal Fisher ({Inputs}) of {Layers} layers over {Steps} steps ({Samples} samples each) in {Seconds:F1} s",
            Inputs, layers, steps, perStep, watch.Elapsed.TotalSeconds);
        return new TemporalFisher(infos, weights.Select(w => w.Name).ToArray(), values, perStep);
    }

    /// <summary>
    /// Runs the sampler on the noise and returns x_t of every step <c>[T, N, C, H, W]</c> and the targets
    /// ε* = (x_t − √ᾱ·x0*) / √(1−ᾱ), x0* the trajectories' final samples.
    /// </summary>
    private (Tensor Inputs, Tensor Targets) RunTrajectories(CancellationToken cancellationToken)
    {
        int steps = _diffusion.NumTimesteps;
        var recorded = new List<(TimestepInfo Step, Tensor Input)>();
        try
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var options = _sampling! with
            {
                Progress = null,
                OnStep = step => recorded.Add((step.Step, step.Input.detach().clone().DetachFromDisposeScope())),
            };
            // The samplers return the final sample outside any dispose scope: disposed here (twice is harmless).
            using var final = _sampler!(_model, _data, _labels, options, cancellationToken);
            if (recorded.Count != steps)
                throw new CalibrationException($"the sampler made {recorded.Count} steps, but the diffusion has {steps}: give the sampler of this schedule.");
            for (int k = 0; k < steps; k++)
            {
                double expected = _diffusion.TimestepMap[steps - 1 - k];
                if (recorded[k].Step.StepIndex != k || recorded[k].Step.Timestep != expected)
                    throw new CalibrationException($"the sampler's step {k} is {recorded[k].Step}, but the diffusion's step {k} is at timestep {expected}: give the sampler of this schedule.");
            }
            if (!final.shape.SequenceEqual(_data.shape))
                throw new CalibrationException($"the sampler returned [{string.Join(", ", final.shape)}] for noise of [{string.Join(", ", _data.shape)}].");
            var x0 = final.detach();
            var inputs = torch.stack(recorded.Select(r => r.Input).ToArray());
            var targets = torch.stack(Enumerable.Range(0, steps).Select(k =>
            {
                double ab = _diffusion.AlphasCumprod[steps - 1 - k];
                return (recorded[k].Input - x0 * Math.Sqrt(ab)) / Math.Sqrt(1 - ab);
            }).ToArray());
            if (!torch.isfinite(targets).all().item<bool>())
                throw new CalibrationException("the sampler's trajectories give non-finite Fisher targets (non-finite samples?).");
            return (inputs.MoveToOuterDisposeScope(), targets.MoveToOuterDisposeScope());
        }
        finally
        {
            foreach (var r in recorded) r.Input.Dispose();
        }
    }
}
