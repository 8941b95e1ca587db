using AdaTSQ.Abstractions;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// A deterministic sampler that runs one sampling step at a time, so that a search can branch a
/// trajectory at any step and continue each branch from its own state (see
/// AdaTSQ's bit-width search (<c>BitWidthSearch</c>)). Made by <see cref="DiffusionSampler.DdimSteps"/> (DDIM, η = 0)
/// or <see cref="FlowMatchingSampler.EulerSteps"/>.
/// </summary>
public interface IStepSampler
{
    /// <summary>Number of sampling steps of a whole trajectory.</summary>
    int StepCount { get; }

    /// <summary>Where step <paramref name="step"/> (0 = first, noisiest) is: index, count and model timestep.</summary>
    TimestepInfo StepInfo(int step);

    /// <summary>
    /// The sample after step <paramref name="step"/> from the sample <paramref name="x"/> before it (a new
    /// tensor; <paramref name="x"/> is not modified). Sets <see cref="TimestepContext"/> around the model
    /// call. The same inputs always give the same output.
    /// </summary>
    Tensor Step(Denoiser model, Tensor x, Tensor labels, int step);
}
