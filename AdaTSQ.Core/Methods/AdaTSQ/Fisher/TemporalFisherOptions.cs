using AdaTSQ.Calibration;
namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>In which space the denoising loss of the temporal Fisher is measured.</summary>
public enum FisherLossSpace
{
    /// <summary>The training loss: ℓ = mean (ε̂ − ε)² (the default; the paper's denoising loss).</summary>
    Noise,

    /// <summary>
    /// The error of the implied clean image: x̂0 − x0 = −√((1−ᾱ)/ᾱ)·(ε̂ − ε), so ℓ_x0 = ((1−ᾱ)/ᾱ)·ℓ_ε and
    /// F_x0 = ((1−ᾱ)/ᾱ)²·F_ε. It moves weight from the last (nearly clean) steps, where an ε error
    /// barely changes the image, to the noisy ones.
    /// </summary>
    CleanImage,
}

/// <summary>Options of <see cref="TemporalFisherEstimator"/>.</summary>
public sealed record TemporalFisherOptions
{
    /// <summary>Calibration samples (x0, label, noise; or trajectories for <see cref="FisherInputs.Trajectory"/>) averaged per sampling step. Default 16.</summary>
    public int SamplesPerStep { get; init; } = 16;

    /// <summary>
    /// Samples per backward pass. 1 (default) gives the exact empirical Fisher, the mean of squared
    /// per-sample gradients; m &gt; 1 is m× cheaper and uses <c>m·‖∇ mean_m ℓ‖²</c>, which equals it
    /// only when the per-sample gradients are uncorrelated.
    /// </summary>
    public int MicroBatch { get; init; } = 1;

    /// <summary>The space of the loss (default <see cref="FisherLossSpace.Noise"/>).</summary>
    public FisherLossSpace LossSpace { get; init; } = FisherLossSpace.Noise;

    /// <summary>Seed of the choice of x0 samples (or trajectories) and of the noise at each step. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (SamplesPerStep <= 0) p.Add($"Fisher samples per step {SamplesPerStep} must be positive.");
        if (MicroBatch <= 0) p.Add($"Fisher micro-batch {MicroBatch} must be positive.");
        return p;
    }
}
