namespace AdaTSQ.Abstractions;

/// <summary>
/// Where a sampler is in the denoising trajectory: the index of the sampling step (0 = the first,
/// noisiest step), how many steps the trajectory has, and the diffusion timestep <c>t</c> the model
/// is called with (e.g. 999 … 0 for DDPM, or 1.0 … 0.0 for flow matching).
/// </summary>
/// <param name="StepIndex">Index of the sampling step, 0-based, 0 = first (noisiest).</param>
/// <param name="StepCount">Number of sampling steps of the trajectory.</param>
/// <param name="Timestep">The model's timestep value at this step.</param>
public readonly record struct TimestepInfo(int StepIndex, int StepCount, double Timestep)
{
    /// <summary>Position in the trajectory in [0, 1]: 0 at the first step, 1 at the last.</summary>
    public double Progress => StepCount <= 1 ? 0.0 : (double)StepIndex / (StepCount - 1);

    /// <inheritdoc />
    public override string ToString() => $"step {StepIndex + 1}/{StepCount} (t={Timestep:G4})";
}
