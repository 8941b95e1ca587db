namespace AdaTSQ.Quantization;

/// <summary>One layer that <see cref="ModelSurgery"/> replaced.</summary>
/// <param name="Name">Dotted name of the layer.</param>
/// <param name="InFeatures">Input features.</param>
/// <param name="OutFeatures">Output features.</param>
/// <param name="HasBias">Whether the layer has a bias.</param>
public sealed record ReplacedLayer(string Name, long InFeatures, long OutFeatures, bool HasBias)
{
    /// <summary>Number of weight parameters (in × out).</summary>
    public long WeightCount => InFeatures * OutFeatures;
}

/// <summary>What <see cref="ModelSurgery.ReplaceLinears"/> did: the layers replaced and the linear layers left alone.</summary>
/// <param name="Replaced">The layers now wrapped by a <see cref="QuantLinear"/>, in model order.</param>
/// <param name="Skipped">Names of linear layers the selector did not choose.</param>
public sealed record SurgeryReport(IReadOnlyList<ReplacedLayer> Replaced, IReadOnlyList<string> Skipped)
{
    /// <inheritdoc />
    public override string ToString() =>
        $"replaced {Replaced.Count} linear layer(s) ({Replaced.Sum(r => r.WeightCount):N0} weights), left {Skipped.Count}";
}
