using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// One model call at one sampling step, shared by the samplers: sets the <see cref="TimestepContext"/>,
/// and with classifier-free guidance batches the conditional and unconditional passes and returns
/// uncond + scale·(cond − uncond) on the first C channels (the extra channels, e.g. learned variances,
/// come from the conditional pass).
/// </summary>
internal static class GuidedPrediction
{
    public static Tensor Predict(Denoiser model, Tensor x, Tensor labels, TimestepInfo step, SamplingOptions o)
    {
        long n = x.shape[0], c = x.shape[1];
        using var context = TimestepContext.Enter(step);
        Tensor output;
        if (o.CfgScale > 1)
        {
            var t2 = torch.full(2 * n, step.Timestep, dtype: ScalarType.Float32, device: x.device);
            var y2 = torch.cat([labels, torch.full_like(labels, o.NullClass!.Value)]);
            var both = model(torch.cat([x, x]), t2, y2);
            var cond = both[..(int)n];
            var uncond = both[(int)n..];
            var guided = uncond[.., ..(int)c] + (cond[.., ..(int)c] - uncond[.., ..(int)c]) * o.CfgScale;
            output = torch.cat([guided, cond[.., (int)c..]], dim: 1);
        }
        else
        {
            output = model(x, torch.full(n, step.Timestep, dtype: ScalarType.Float32, device: x.device), labels);
        }
        if (output.shape[0] != n || output.shape[1] < c)
            throw new ArgumentException($"the model returned [{string.Join(", ", output.shape)}] for an input of [{string.Join(", ", x.shape)}].");
        return output;
    }
}
