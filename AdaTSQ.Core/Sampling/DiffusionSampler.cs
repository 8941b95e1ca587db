using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// DDPM (ancestral) and DDIM sampling over a <see cref="GaussianDiffusion"/>, as the official DiT code
/// does them (<c>p_sample_loop</c>, <c>ddim_sample_loop</c>, both through
/// <see cref="GaussianDiffusion.PMeanVariance"/>), with classifier-free guidance (on
/// <see cref="SamplingOptions.GuidedChannels"/> channels) and learned or fixed variances. The model's
/// output must fit the diffusion's <see cref="GaussianDiffusion.VarianceType"/> (2·C channels for
/// learned-range, C otherwise; else <see cref="ModelOutputMismatchException"/>). Before every model call the step is set in <see cref="TimestepContext"/>, so
/// timestep-dependent quantization policies see it. Device-agnostic: works where the noise lives.
/// </summary>
public sealed class DiffusionSampler(GaussianDiffusion diffusion)
{
    /// <summary>The process sampled from.</summary>
    public GaussianDiffusion Diffusion { get; } = diffusion;

    /// <summary>Ancestral DDPM sampling from <paramref name="noise"/> x_T; returns x_0.</summary>
    public Tensor SampleDdpm(Denoiser model, Tensor noise, Tensor labels, SamplingOptions? options = null, CancellationToken cancellationToken = default) =>
        Loop(model, noise, labels, options ?? new SamplingOptions(), ddim: false, cancellationToken);

    /// <summary>DDIM sampling (η from the options) from <paramref name="noise"/>; returns x_0.</summary>
    public Tensor SampleDdim(Denoiser model, Tensor noise, Tensor labels, SamplingOptions? options = null, CancellationToken cancellationToken = default) =>
        Loop(model, noise, labels, options ?? new SamplingOptions(), ddim: true, cancellationToken);

    private Tensor Loop(Denoiser model, Tensor noise, Tensor labels, SamplingOptions o, bool ddim, CancellationToken ct)
    {
        if (o.CfgScale > 1 && o.NullClass is null) throw new ArgumentException("classifier-free guidance (CfgScale > 1) needs SamplingOptions.NullClass.", nameof(o));
        if (labels.shape[0] != noise.shape[0]) throw new ArgumentException($"{labels.shape[0]} labels for {noise.shape[0]} samples.", nameof(labels));
        var d = Diffusion;
        int n = d.NumTimesteps;
        using var noGrad = torch.no_grad();
        using var gen = new Generator((ulong)o.Seed, noise.device);
        var x = noise.detach().clone().DetachFromDisposeScope();
        try
        {
            for (int k = 0; k < n; k++)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = torch.NewDisposeScope();
                var next = StepCore(model, x, labels, k, o, ddim, gen, out var info, out var eps);
                o.OnStep?.Invoke(new SamplerStep(info, x, eps, next));
                x.Dispose();
                x = next.DetachFromDisposeScope();
                o.Progress?.Report(new QuantizationProgress("sample", k + 1, n));
            }
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A deterministic DDIM (η = 0) sampler that runs one step at a time (<see cref="IStepSampler"/>), for
    /// searches that branch a trajectory at every step. Its steps are bit-identical to <see cref="SampleDdim"/>'s.
    /// </summary>
    /// <exception cref="NotSupportedException">η &gt; 0: stochastic steps cannot be branched reproducibly.</exception>
    public IStepSampler DdimSteps(SamplingOptions? options = null)
    {
        var o = options ?? new SamplingOptions();
        if (o.Eta != 0) throw new NotSupportedException($"step-by-step DDIM needs η = 0 (deterministic steps), got η = {o.Eta}.");
        if (o.CfgScale > 1 && o.NullClass is null) throw new ArgumentException("classifier-free guidance (CfgScale > 1) needs SamplingOptions.NullClass.", nameof(options));
        return new DdimStepSampler(this, o);
    }

    private sealed class DdimStepSampler(DiffusionSampler sampler, SamplingOptions options) : IStepSampler
    {
        public int StepCount => sampler.Diffusion.NumTimesteps;

        public TimestepInfo StepInfo(int step) => sampler.Info(step);

        public Tensor Step(Denoiser model, Tensor x, Tensor labels, int step)
        {
            if (step < 0 || step >= StepCount) throw new ArgumentOutOfRangeException(nameof(step), $"step {step} of {StepCount}.");
            if (labels.shape[0] != x.shape[0]) throw new ArgumentException($"{labels.shape[0]} labels for {x.shape[0]} samples.", nameof(labels));
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            return sampler.StepCore(model, x, labels, step, options, ddim: true, gen: null, out _, out _).MoveToOuterDisposeScope();
        }
    }

    private TimestepInfo Info(int k) => new(k, Diffusion.NumTimesteps, Diffusion.TimestepMap[Diffusion.NumTimesteps - 1 - k]);

    /// <summary>One step k (0 = first) from x; the stochastic parts use <paramref name="gen"/> (null only when η = 0 for DDIM).</summary>
    private Tensor StepCore(Denoiser model, Tensor x, Tensor labels, int k, SamplingOptions o, bool ddim, Generator? gen, out TimestepInfo info, out Tensor eps)
    {
        var d = Diffusion;
        int i = d.NumTimesteps - 1 - k;
        info = Info(k);
        var output = GuidedPrediction.Predict(model, x, labels, info, o);
        eps = output[.., ..(int)x.shape[1]];
        // The official p_sample / ddim_sample: both go through p_mean_variance (which checks the output channels).
        var p = d.PMeanVariance(output, x, i, o.ClipDenoised);
        var xStart = p.PredXStart;
        if (ddim)
        {
            var e = d.PredictEps(x, i, xStart);
            double ab = d.AlphasCumprod[i], abp = d.AlphasCumprodPrev[i];
            double sigma = o.Eta * Math.Sqrt((1 - abp) / (1 - ab)) * Math.Sqrt(1 - ab / abp);
            var next = xStart * Math.Sqrt(abp) + e * Math.Sqrt(Math.Max(1 - abp - sigma * sigma, 0));
            if (i > 0 && sigma > 0) next = next + torch.randn(x.shape, generator: gen, device: x.device, dtype: x.dtype) * sigma;
            return next;
        }
        if (i == 0) return p.Mean;
        // exp(½·log σ²); a fixed variance is one number per step, applied as a scalar.
        var std = d.VarianceType == VarianceType.LearnedRange ? (p.LogVariance * 0.5).exp() : (torch.tensor(d.FixedLogVariance(i)) * 0.5).exp();
        return p.Mean + torch.randn(x.shape, generator: gen, device: x.device, dtype: x.dtype) * std;
    }
}
