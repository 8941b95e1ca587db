namespace AdaTSQ.Evaluation.Comparison;

/// <summary>Two cells compared image by image (Δ = B − A).</summary>
/// <param name="A">First cell's key.</param>
/// <param name="B">Second cell's key.</param>
/// <param name="Psnr">Mean per-image ΔPSNR with its t interval.</param>
/// <param name="Ssim">Mean per-image ΔSSIM (null without SSIM).</param>
/// <param name="McNemar">McNemar's exact test on per-image class correctness (null without a classifier).</param>
public sealed record CellComparison(string A, string B, PairedDifference Psnr, PairedDifference? Ssim, McNemarResult? McNemar);
