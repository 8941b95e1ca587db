namespace AdaTSQ.Quantization;

/// <summary>
/// Which elements of a tensor share one scale (and zero point). A tensor is always seen as a
/// matrix whose last dimension is the reduction (input-feature) dimension: a weight
/// <c>[out, in]</c>, an activation <c>[..., tokens, in]</c> viewed as <c>[rows, in]</c>.
/// </summary>
public enum QuantGranularity
{
    /// <summary>One scale for the whole tensor.</summary>
    PerTensor,
    /// <summary>One scale per output channel (row) of a weight. Weights only.</summary>
    PerChannel,
    /// <summary>One scale per group of <see cref="QuantSpec.GroupSize"/> consecutive input features of each row.</summary>
    PerGroup,
    /// <summary>One scale per token (row) of an activation, computed at run time. Activations only.</summary>
    PerToken,
}

/// <summary>What a <see cref="QuantSpec"/> is applied to; validation differs between the two.</summary>
public enum QuantTarget
{
    /// <summary>A layer's weight matrix.</summary>
    Weight,
    /// <summary>A layer's input activation.</summary>
    Activation,
}
