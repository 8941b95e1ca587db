using AdaTSQ.Abstractions;

namespace AdaTSQ.Quantization;

/// <summary>A problem with one layer (bad weights, a missing weight version or range); the message names the layer.</summary>
public sealed class LayerQuantizationException : AdaTSQException
{
    /// <summary>Creates the exception; the message is "layer '<paramref name="layerName"/>': <paramref name="problem"/>".</summary>
    public LayerQuantizationException(string layerName, string problem)
        : base($"layer '{layerName}': {problem}")
    {
        LayerName = layerName;
        Problem = problem;
    }

    /// <summary>The dotted name of the layer, e.g. <c>blocks.3.attn.qkv</c>.</summary>
    public string LayerName { get; }

    /// <summary>What is wrong, without the layer name.</summary>
    public string Problem { get; }
}
