using AdaTSQ.Abstractions;

namespace AdaTSQ.Quantization;

/// <summary>A layer could not be swapped in or out of a model; the message names the layer and why.</summary>
public sealed class ModelSurgeryException(string message) : AdaTSQException(message);
