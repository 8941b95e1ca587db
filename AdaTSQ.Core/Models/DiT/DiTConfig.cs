namespace AdaTSQ.Models.DiT;

/// <summary>
/// Hyper-parameters of a DiT (Peebles &amp; Xie, "Scalable Diffusion Models with Transformers"),
/// with the paper's named configurations. Defaults are those of the official <c>models.py</c>
/// (DiT-XL/2 on 32×32×4 latents of 256×256 images, 1000 classes, learned sigma).
/// </summary>
public sealed record DiTConfig
{
    /// <summary>Spatial size of the (square) input: 32 for 256×256 latents.</summary>
    public int InputSize { get; init; } = 32;
    /// <summary>Patch size: 2, 4 or 8 in the paper.</summary>
    public int PatchSize { get; init; } = 2;
    /// <summary>Input channels: 4 for SD-VAE latents, 1 for grey pixels.</summary>
    public int InChannels { get; init; } = 4;
    /// <summary>Transformer width.</summary>
    public int HiddenSize { get; init; } = 1152;
    /// <summary>Number of DiT blocks.</summary>
    public int Depth { get; init; } = 28;
    /// <summary>Attention heads.</summary>
    public int NumHeads { get; init; } = 16;
    /// <summary>MLP hidden width = HiddenSize × MlpRatio.</summary>
    public double MlpRatio { get; init; } = 4.0;
    /// <summary>Probability of dropping the label in training (classifier-free guidance); &gt; 0 adds the null class.</summary>
    public double ClassDropoutProb { get; init; } = 0.1;
    /// <summary>Number of classes (the null class, when used, is index NumClasses).</summary>
    public int NumClasses { get; init; } = 1000;
    /// <summary>Predict a variance as well: 2·InChannels output channels.</summary>
    public bool LearnSigma { get; init; } = true;

    /// <summary>Output channels (2·InChannels with learned sigma).</summary>
    public int OutChannels => LearnSigma ? InChannels * 2 : InChannels;
    /// <summary>Patches (tokens) per image.</summary>
    public int NumPatches => (InputSize / PatchSize) * (InputSize / PatchSize);
    /// <summary>MLP hidden width.</summary>
    public int MlpHidden => (int)(HiddenSize * MlpRatio);

    /// <summary>
    /// The number of ε channels the official DiT sampling code guides: its <c>forward_with_cfg</c> applies
    /// classifier-free guidance to <c>model_out[:, :3]</c> only, i.e. 3 of the 4 SD-VAE latent channels of
    /// every official configuration ("for exact reproducibility"; the 4th ε channel and the variance
    /// channels stay conditional). Here min(3, <see cref="InChannels"/>), so models of 1 to 3 channels are
    /// guided on all of them. Pass it as <see cref="Sampling.SamplingOptions.GuidedChannels"/> or to
    /// <see cref="DiT.ForwardWithCfg"/> to reproduce the official samples; the default there (null) guides
    /// all channels.
    /// </summary>
    public int OfficialGuidedChannels => Math.Min(3, InChannels);

    /// <summary>The paper's configurations by name, e.g. <c>DiT-XL/2</c>, <c>DiT-S/8</c>.</summary>
    public static DiTConfig Named(string name)
    {
        var parts = name.Replace("DiT-", "", StringComparison.OrdinalIgnoreCase).Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[1], out int patch) || patch is not (2 or 4 or 8))
            throw new ArgumentException($"unknown DiT configuration '{name}': use DiT-{{S,B,L,XL}}/{{2,4,8}}.", nameof(name));
        return parts[0].ToUpperInvariant() switch
        {
            "XL" => new DiTConfig { Depth = 28, HiddenSize = 1152, NumHeads = 16, PatchSize = patch },
            "L" => new DiTConfig { Depth = 24, HiddenSize = 1024, NumHeads = 16, PatchSize = patch },
            "B" => new DiTConfig { Depth = 12, HiddenSize = 768, NumHeads = 12, PatchSize = patch },
            "S" => new DiTConfig { Depth = 12, HiddenSize = 384, NumHeads = 6, PatchSize = patch },
            _ => throw new ArgumentException($"unknown DiT size '{parts[0]}' in '{name}': use S, B, L or XL.", nameof(name)),
        };
    }

    /// <summary>
    /// The small class-conditional pixel-space DiT trained in this repository on 28×28 grey images
    /// (Fashion-MNIST / MNIST): patch 4 → 7×7 = 49 tokens, no learned sigma.
    /// </summary>
    public static DiTConfig Mnist { get; } = new()
    {
        InputSize = 28, PatchSize = 4, InChannels = 1, HiddenSize = 192, Depth = 6, NumHeads = 6,
        NumClasses = 10, ClassDropoutProb = 0.1, LearnSigma = false,
    };

    /// <summary>Every problem with these values; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (InputSize <= 0 || PatchSize <= 0 || InputSize % PatchSize != 0) p.Add($"input size {InputSize} is not a positive multiple of patch size {PatchSize}.");
        if (InChannels <= 0) p.Add($"in channels {InChannels} must be positive.");
        if (HiddenSize <= 0 || NumHeads <= 0 || HiddenSize % NumHeads != 0) p.Add($"hidden size {HiddenSize} is not a positive multiple of {NumHeads} heads.");
        if (HiddenSize % 4 != 0) p.Add($"hidden size {HiddenSize} must be a multiple of 4 (2-D sin-cos position embedding).");
        if (Depth <= 0) p.Add($"depth {Depth} must be positive.");
        if (MlpRatio <= 0) p.Add($"MLP ratio {MlpRatio} must be positive.");
        if (NumClasses <= 0) p.Add($"number of classes {NumClasses} must be positive.");
        if (ClassDropoutProb is < 0 or >= 1) p.Add($"class dropout probability {ClassDropoutProb} is outside [0, 1).");
        return p;
    }
}
