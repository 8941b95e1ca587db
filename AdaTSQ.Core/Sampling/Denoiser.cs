using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// A diffusion model as samplers call it: noisy input <c>[N, C, H, W]</c>, timesteps <c>[N]</c> (float,
/// in the model's own scale), labels <c>[N]</c> int64 → prediction <c>[N, C or 2C, H, W]</c>.
/// A DiT is <c>(x, t, y) =&gt; dit.call(x, t, y)</c>.
/// </summary>
public delegate Tensor Denoiser(Tensor x, Tensor t, Tensor y);
