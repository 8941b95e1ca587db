using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// Euler sampling of a rectified-flow (flow-matching) model, as Flux, SD3 and Wan use it: the data
/// path is x_t = (1 − t)·x_0 + t·ε, the model predicts the velocity v = ε − x_0, and sampling steps
/// t from 1 to 0 with x ← x + (t_next − t)·v. Times are shifted by
/// t' = s·t / (1 + (s − 1)·t) (s = <see cref="Shift"/>; 1 = no shift), and the model is called with
/// t'·<see cref="TimestepScale"/>.
/// </summary>
/// <param name="steps">Number of Euler steps.</param>
/// <param name="shift">Timestep shift s ≥ 1 … (Flux/SD3 use about 3 at high resolution).</param>
/// <param name="timestepScale">What the model's timestep input is multiplied by (1000 for DiT-style embedders).</param>
public sealed class FlowMatchingSampler(int steps, double shift = 1.0, double timestepScale = 1000.0)
{
    /// <summary>Number of Euler steps.</summary>
    public int Steps { get; } = steps > 0 ? steps : throw new ArgumentOutOfRangeException(nameof(steps), $"steps must be positive, got {steps}.");
    /// <summary>Timestep shift.</summary>
    public double Shift { get; } = shift > 0 ? shift : throw new ArgumentOutOfRangeException(nameof(shift), $"shift must be positive, got {shift}.");
    /// <summary>Scale of the model's timestep input.</summary>
    public double TimestepScale { get; } = timestepScale;

    /// <summary>The shifted times t_0 = 1 &gt; t_1 &gt; … &gt; t_Steps = 0.</summary>
    public double[] Times() =>
        Enumerable.Range(0, Steps + 1).Select(k => 1.0 - (double)k / Steps).Select(t => Shift * t / (1 + (Shift - 1) * t)).ToArray();

    /// <summary>This sampler one step at a time (<see cref="IStepSampler"/>; its steps are bit-identical to <see cref="Sample"/>'s).</summary>
    public IStepSampler EulerSteps(SamplingOptions? options = null)
    {
        var o = options ?? new SamplingOptions();
        if (o.CfgScale > 1 && o.NullClass is null) throw new ArgumentException("classifier-free guidance (CfgScale > 1) needs SamplingOptions.NullClass.", nameof(options));
        return new EulerStepSampler(this, o, Times());
    }

    private sealed class EulerStepSampler(FlowMatchingSampler sampler, SamplingOptions options, double[] times) : IStepSampler
    {
        public int StepCount => sampler.Steps;

        public TimestepInfo StepInfo(int step) => new(step, sampler.Steps, times[step] * sampler.TimestepScale);

        public Tensor Step(Denoiser model, Tensor x, Tensor labels, int step)
        {
            if (step < 0 || step >= StepCount) throw new ArgumentOutOfRangeException(nameof(step), $"step {step} of {StepCount}.");
            if (labels.shape[0] != x.shape[0]) throw new ArgumentException($"{labels.shape[0]} labels for {x.shape[0]} samples.", nameof(labels));
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            return EulerStep(model, x, labels, StepInfo(step), times, options, out _).MoveToOuterDisposeScope();
        }
    }

    private static Tensor EulerStep(Denoiser model, Tensor x, Tensor labels, TimestepInfo info, double[] times, SamplingOptions o, out Tensor v)
    {
        int k = info.StepIndex;
        v = GuidedPrediction.Predict(model, x, labels, info, o)[.., ..(int)x.shape[1]];
        return x + v * (times[k + 1] - times[k]);
    }

    /// <summary>Samples from <paramref name="noise"/> (t = 1) to data (t = 0).</summary>
    public Tensor Sample(Denoiser model, Tensor noise, Tensor labels, SamplingOptions? options = null, CancellationToken cancellationToken = default)
    {
        var o = options ?? new SamplingOptions();
        if (o.CfgScale > 1 && o.NullClass is null) throw new ArgumentException("classifier-free guidance (CfgScale > 1) needs SamplingOptions.NullClass.", nameof(options));
        var times = Times();
        using var noGrad = torch.no_grad();
        var x = noise.detach().clone().DetachFromDisposeScope();
        try
        {
            for (int k = 0; k < Steps; k++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var info = new TimestepInfo(k, Steps, times[k] * TimestepScale);
                using var scope = torch.NewDisposeScope();
                var next = EulerStep(model, x, labels, info, times, o, out var v);
                o.OnStep?.Invoke(new SamplerStep(info, x, v, next));
                x.Dispose();
                x = next.DetachFromDisposeScope();
                o.Progress?.Report(new QuantizationProgress("sample", k + 1, Steps));
            }
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }
}
