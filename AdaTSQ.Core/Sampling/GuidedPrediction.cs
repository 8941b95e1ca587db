using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>
/// One model call at one sampling step, shared by the samplers: sets the <see cref="TimestepContext"/>,
/// and with classifier-free guidance batches the conditional and unconditional passes and combines them
/// by the one guidance rule of this library (<see cref="Guide"/>, also used by
/// <see cref="Models.DiT.DiT.ForwardWithCfg"/>).
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
            int k = GuidedChannelCount(o.GuidedChannels, c, nameof(SamplingOptions.GuidedChannels));
            var t2 = torch.full(2 * n, step.Timestep, dtype: ScalarType.Float32, device: x.device);
            var y2 = torch.cat([labels, torch.full_like(labels, o.NullClass!.Value)]);
            var both = model(torch.cat([x, x]), t2, y2);
            CheckOutput(both, 2 * n, c, [2 * n, .. x.shape[1..]]);
            output = Guide(both[..(int)n], both[(int)n..], o.CfgScale, k);
        }
        else
        {
            output = model(x, torch.full(n, step.Timestep, dtype: ScalarType.Float32, device: x.device), labels);
        }
        CheckOutput(output, n, c, x.shape);
        return output;
    }

    /// <summary>
    /// The guidance rule: channels [0, <paramref name="guidedChannels"/>) become
    /// uncond + scale·(cond − uncond); every other channel is <paramref name="cond"/>'s.
    /// </summary>
    public static Tensor Guide(Tensor cond, Tensor uncond, double scale, int guidedChannels)
    {
        int k = guidedChannels;
        var guided = uncond[.., ..k] + (cond[.., ..k] - uncond[.., ..k]) * scale;
        return torch.cat([guided, cond[.., k..]], dim: 1);
    }

    /// <summary>The number of guided channels: <paramref name="requested"/> (null = all <paramref name="channels"/>), checked to be in [1, channels].</summary>
    public static int GuidedChannelCount(int? requested, long channels, string paramName)
    {
        int k = requested ?? (int)channels;
        if (k < 1 || k > channels)
            throw new ArgumentOutOfRangeException(paramName, $"{k} guided channels for a sample of {channels} channels: use 1 to {channels} (null = all).");
        return k;
    }

    private static void CheckOutput(Tensor output, long n, long c, long[] inputShape)
    {
        if (output.shape[0] != n || output.shape[1] < c)
            throw new ArgumentException($"the model returned [{string.Join(", ", output.shape)}] for an input of [{string.Join(", ", inputShape)}].");
    }
}
