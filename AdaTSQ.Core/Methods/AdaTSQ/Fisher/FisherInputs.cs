namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>At which noisy inputs x_t a <see cref="TemporalFisherEstimator"/> takes the denoising loss.</summary>
public enum FisherInputs
{
    /// <summary>
    /// Forward-process samples: <c>x_t = √ᾱ·x0 + √(1−ᾱ)·ε</c> from clean data x0 and fresh noise ε, target ε (the
    /// training loss; the paper's temporal Fisher).
    /// </summary>
    QSample,

    /// <summary>
    /// The full-precision sampler's own trajectories: x_t is the sample the sampler visits at step t when run from
    /// noise, the target is the noise that puts x_t on the line to the trajectory's own end point x0*:
    /// <c>ε* = (x_t − √ᾱ·x0*) / √(1−ᾱ)</c> (see <see cref="TemporalFisherEstimator"/>).
    /// </summary>
    Trajectory,
}
