namespace AdaTSQ.Quantization;

/// <summary>
/// The quantization of one linear layer at one moment: how its weight and how its input activation
/// are quantized. <see cref="ToString"/> gives the usual short name, e.g. <c>W4A8</c>.
/// </summary>
/// <param name="Weight">Weight quantization (<see cref="QuantSpec.FullPrecision"/> = keep the float weight).</param>
/// <param name="Activation">Input-activation quantization (<see cref="QuantSpec.FullPrecision"/> = none).</param>
public sealed record LayerQuantConfig(QuantSpec Weight, QuantSpec Activation)
{
    /// <summary>Neither weight nor activation quantized.</summary>
    public static LayerQuantConfig FullPrecision { get; } = new(QuantSpec.FullPrecision, QuantSpec.FullPrecision);

    /// <summary><c>W{w}A{a}</c> with default specs: per-channel symmetric weights, dynamic per-token activations.</summary>
    public static LayerQuantConfig Create(int weightBits, int activationBits = QuantSpec.FullPrecisionBits) =>
        new(QuantSpec.Weight(weightBits), QuantSpec.Activation(activationBits));

    /// <summary>Weight bits, 16 when not quantized.</summary>
    public int WeightBits => Weight.Bits;

    /// <summary>Activation bits, 16 when not quantized.</summary>
    public int ActivationBits => Activation.Bits;

    /// <summary>Short name, e.g. <c>W4A8</c>, <c>W4A16</c>, <c>W16A16</c>.</summary>
    public override string ToString() => $"W{Weight.Bits}A{Activation.Bits}";
}
