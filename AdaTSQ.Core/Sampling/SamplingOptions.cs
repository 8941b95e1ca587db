using AdaTSQ.Abstractions;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>One step of a sampling run, as <see cref="SamplingOptions.OnStep"/> sees it. The tensors are borrowed: clone what you keep.</summary>
/// <param name="Step">Where in the trajectory (index 0 = first, noisiest step).</param>
/// <param name="Input">The model input x_t.</param>
/// <param name="Output">The model prediction used (after guidance): ε for DDPM/DDIM, velocity for flow matching.</param>
/// <param name="Next">The sample after this step.</param>
public readonly record struct SamplerStep(TimestepInfo Step, Tensor Input, Tensor Output, Tensor Next);

/// <summary>Options shared by the samplers.</summary>
public sealed record SamplingOptions
{
    /// <summary>Seed of the per-step noise (DDPM, DDIM with η &gt; 0). Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Classifier-free guidance scale; ≤ 1 = no guidance (a single conditional pass). Default 1.</summary>
    public double CfgScale { get; init; } = 1.0;

    /// <summary>The null (unconditional) label, required when <see cref="CfgScale"/> &gt; 1.</summary>
    public long? NullClass { get; init; }

    /// <summary>
    /// How many leading channels classifier-free guidance applies to; null (default) = all C channels of
    /// the sample (the standard choice). The rule, shared with <see cref="Models.DiT.DiT.ForwardWithCfg"/>:
    /// channels [0, k) of the prediction are uncond + scale·(cond − uncond); every other output channel
    /// (the remaining ε channels and any learned-variance channels) is the conditional prediction.
    /// The official DiT guides 3 of its 4 latent channels: use
    /// <see cref="Models.DiT.DiTConfig.OfficialGuidedChannels"/> to reproduce it. Must be in [1, C].
    /// </summary>
    public int? GuidedChannels { get; init; }

    /// <summary>Clamp x̂_0 to [−1, 1] at each step (the official <c>clip_denoised</c>; DiT samples with false). Default false.</summary>
    public bool ClipDenoised { get; init; }

    /// <summary>DDIM η (0 = deterministic). Default 0.</summary>
    public double Eta { get; init; }

    /// <summary>Called after every step (e.g. to record the trajectory; see <see cref="Trajectory"/>).</summary>
    public Action<SamplerStep>? OnStep { get; init; }

    /// <summary>Progress, one unit per step.</summary>
    public IProgress<QuantizationProgress>? Progress { get; init; }
}
