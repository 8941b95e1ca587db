namespace AdaTSQ.Evaluation;

/// <summary>
/// The figures of one evaluated setting, each with its confidence interval (see docs/evaluation-method.md):
/// mean PSNR and SSIM against the reference images of the same noise (Student-t intervals), class accuracy
/// and FID (percentile bootstrap over the generated samples).
/// </summary>
/// <param name="Name">The setting.</param>
/// <param name="Count">Generated images evaluated.</param>
/// <param name="Psnr">Mean per-image PSNR (dB) against the reference; +∞ with a NaN interval when the images are the reference.</param>
/// <param name="Ssim">Mean per-image SSIM against the reference (null when SSIM was off).</param>
/// <param name="Accuracy">Share of images classified as their requested class (null without a classifier).</param>
/// <param name="Fid">Fréchet distance to the reference feature statistics (null without features or statistics).</param>
/// <param name="FidReferenceCount">Number of real images behind the FID reference statistics (0 when no FID).</param>
public sealed record SettingSummary(string Name, int Count, ConfidenceInterval Psnr, ConfidenceInterval? Ssim,
    ConfidenceInterval? Accuracy, ConfidenceInterval? Fid, int FidReferenceCount);
