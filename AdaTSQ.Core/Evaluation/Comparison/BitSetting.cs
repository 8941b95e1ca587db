using AdaTSQ.Quantization;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// One column of a method comparison: a name such as W4A4 and the weight and activation specs every method
/// quantizes with at that setting.
/// </summary>
/// <param name="Name">Column name, e.g. <c>W4A4</c>; unique within a comparison.</param>
/// <param name="Weights">Weight spec of every quantized layer.</param>
/// <param name="Activations">Activation spec of every quantized layer.</param>
public sealed record BitSetting(string Name, QuantSpec Weights, QuantSpec Activations)
{
    /// <summary>Group size of both operands at 4 bits and below (the README's W4A4 section; SVDQuant's groups of 64).</summary>
    public const int LowBitGroupSize = 64;

    /// <summary>W8A8: int8 weights per output channel, int8 dynamic per-token activations (the project's W8A8).</summary>
    public static BitSetting W8A8 { get; } = new("W8A8", QuantSpec.Weight(8), QuantSpec.Activation(8));

    /// <summary>W4A8: int4 weights per output channel, int8 dynamic per-token activations (the project's W4A8).</summary>
    public static BitSetting W4A8 { get; } = new("W4A8", QuantSpec.Weight(4), QuantSpec.Activation(8));

    /// <summary>W4A4: int4 weights and int4 dynamic activations, both in groups of 64 along the inputs.</summary>
    public static BitSetting W4A4 { get; } = new("W4A4", QuantSpec.Weight(4, LowBitGroupSize), QuantSpec.Activation(4, LowBitGroupSize));

    /// <summary>W3A3: int3 weights and int3 dynamic activations, both in groups of 64 along the inputs.</summary>
    public static BitSetting W3A3 { get; } = new("W3A3", QuantSpec.Weight(3, LowBitGroupSize), QuantSpec.Activation(3, LowBitGroupSize));

    /// <summary>The four columns of the paper's table: W8A8, W4A8, W4A4, W3A3.</summary>
    public static IReadOnlyList<BitSetting> Defaults { get; } = [W8A8, W4A8, W4A4, W3A3];

    /// <summary>The default setting named <paramref name="name"/> (case-insensitive), e.g. "w4a4".</summary>
    /// <exception cref="ArgumentException">No default setting has that name.</exception>
    public static BitSetting Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Defaults.FirstOrDefault(b => string.Equals(b.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"bit setting '{name}' is unknown; the defaults are {string.Join(", ", Defaults.Select(b => b.Name))} (other specs: construct a BitSetting).", nameof(name));
    }

    /// <summary>"W4A4 (weights int4 g64 sym, activations int4 g64 sym)".</summary>
    public string Describe() => $"{Name} (weights {Weights}, activations {Activations})";
}
