using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// What a <see cref="SettingAccumulator"/> computes from each batch of generated images besides PSNR and SSIM
/// against the reference: the class a judge classifier predicts, and an embedding for the Fréchet distance.
/// Both are optional; the model-specific parts (which classifier, which feature network) stay with the caller.
/// </summary>
public sealed record ImageScorers
{
    /// <summary>Value range of the images (2 for [−1, 1]); PSNR and SSIM use it. Default 2.</summary>
    public double DataRange { get; init; } = 2.0;

    /// <summary>Whether SSIM is computed (images must be at least 11×11). Default true.</summary>
    public bool Ssim { get; init; } = true;

    /// <summary>Predicted class of each image of a batch <c>[n, C, H, W]</c>; null = no class accuracy.</summary>
    public Func<Tensor, long[]>? Classify { get; init; }

    /// <summary>
    /// Features of each image of a batch, row-major <c>n × <see cref="FeatureDimension"/></c> (float32; e.g.
    /// 512-d ResNet-18 embeddings); null = no FID.
    /// </summary>
    public Func<Tensor, float[]>? Features { get; init; }

    /// <summary>Length of one feature row (required with <see cref="Features"/>).</summary>
    public int FeatureDimension { get; init; }
}
