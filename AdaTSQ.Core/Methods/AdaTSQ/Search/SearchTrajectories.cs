using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// The trajectories a bit-width search scores policies on: the model as the sampler calls it, a
/// step-by-step sampler, and fixed initial noise with labels. Every candidate path starts from the same
/// noise as the cached full-precision trajectory, so its deviation measures only quantization. Owns copies
/// of the noise and labels.
/// </summary>
public sealed class SearchTrajectories : IDisposable
{
    /// <summary>Creates the set (copies <paramref name="noise"/> and <paramref name="labels"/>).</summary>
    /// <param name="model">The model whose quantized layers are searched, as the sampler calls it.</param>
    /// <param name="sampler">A deterministic step-by-step sampler.</param>
    /// <param name="noise">Initial noise <c>[B, …]</c>.</param>
    /// <param name="labels">Labels <c>[B]</c> (int64).</param>
    public SearchTrajectories(Denoiser model, IStepSampler sampler, Tensor noise, Tensor labels)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Sampler = sampler ?? throw new ArgumentNullException(nameof(sampler));
        ArgumentNullException.ThrowIfNull(noise);
        ArgumentNullException.ThrowIfNull(labels);
        if (noise.Dimensions < 1 || noise.shape[0] == 0) throw new ArgumentException($"noise of shape [{string.Join(", ", noise.shape)}] has no samples.", nameof(noise));
        if (labels.Dimensions != 1 || labels.shape[0] != noise.shape[0])
            throw new ArgumentException($"labels of shape [{string.Join(", ", labels.shape)}] do not match {noise.shape[0]} noise samples.", nameof(labels));
        if (sampler.StepCount <= 0) throw new ArgumentException("the sampler has no steps.", nameof(sampler));
        Noise = noise.detach().clone().DetachFromDisposeScope();
        Labels = labels.detach().clone().DetachFromDisposeScope();
    }

    /// <summary>
    /// <paramref name="samples"/> trajectories of a DiT from noise drawn with <paramref name="seed"/>, labels
    /// round robin over the classes, on the model's device.
    /// </summary>
    public static SearchTrajectories ForDiT(DiT model, IStepSampler sampler, int samples, long seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        var c = model.Config;
        var device = model.parameters().First().device;
        using var generator = new Generator((ulong)seed, device);
        using var noise = torch.randn([samples, c.InChannels, c.InputSize, c.InputSize], generator: generator, device: device);
        using var labels = torch.tensor(Enumerable.Range(0, samples).Select(i => (long)(i % c.NumClasses)).ToArray(), device: device);
        return new SearchTrajectories((x, t, y) => model.call(x, t, y), sampler, noise, labels);
    }

    /// <summary>The model as the sampler calls it.</summary>
    public Denoiser Model { get; }

    /// <summary>The step-by-step sampler.</summary>
    public IStepSampler Sampler { get; }

    /// <summary>Initial noise <c>[B, …]</c>.</summary>
    public Tensor Noise { get; }

    /// <summary>Labels <c>[B]</c>.</summary>
    public Tensor Labels { get; }

    /// <summary>Number of trajectories B.</summary>
    public int Count => (int)Noise.shape[0];

    /// <inheritdoc />
    public void Dispose()
    {
        Noise.Dispose();
        Labels.Dispose();
    }
}
