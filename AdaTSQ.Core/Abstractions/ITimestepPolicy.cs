using AdaTSQ.Quantization;

namespace AdaTSQ.Abstractions;

/// <summary>
/// Decides which quantization each layer uses at each denoising step. Quantized layers ask it on
/// every call, with the step the sampler set in <see cref="TimestepContext"/>; a static policy ignores
/// the step, a time-grouped or dynamic one (AdaTSQ's search result) does not.
/// </summary>
/// <remarks>
/// Implementations must be thread-safe and cheap: <see cref="Resolve"/> runs once per layer per call.
/// </remarks>
public interface ITimestepPolicy
{
    /// <summary>A short name for logs and reports.</summary>
    string Name { get; }

    /// <summary>The config of <paramref name="layerName"/> at <paramref name="step"/> (null = no step set).</summary>
    LayerQuantConfig Resolve(string layerName, TimestepInfo? step);

    /// <summary>
    /// Every config <paramref name="layerName"/> may use at some step (including the step-less one),
    /// so that the layer can prepare exactly those weight versions and no others.
    /// </summary>
    IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName);

    /// <summary>
    /// The layers the policy configures by name (overrides, per-layer rows). Quantization refuses, before
    /// changing the model, a policy naming a layer that is not among the selected ones. Default: none.
    /// </summary>
    IReadOnlyCollection<string> NamedLayers => [];
}
