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

    /// <summary>W6A6: int6 weights per output channel, int6 dynamic per-token activations (TQ-DiT's and HTG's middle column).</summary>
    public static BitSetting W6A6 { get; } = new("W6A6", QuantSpec.Weight(6), QuantSpec.Activation(6));

    /// <summary>Group size of the weight-only settings (D²Quant's and GPTQ's g128).</summary>
    public const int WeightOnlyGroupSize = 128;

    /// <summary>W4A16: weight-only int4 in groups of 128 along the inputs, activations in full precision.</summary>
    public static BitSetting W4A16 { get; } = new("W4A16", QuantSpec.Weight(4, WeightOnlyGroupSize), QuantSpec.FullPrecision);

    /// <summary>W3A16: weight-only int3 in groups of 128, activations in full precision.</summary>
    public static BitSetting W3A16 { get; } = new("W3A16", QuantSpec.Weight(3, WeightOnlyGroupSize), QuantSpec.FullPrecision);

    /// <summary>W2A16: weight-only int2 in groups of 128, activations in full precision.</summary>
    public static BitSetting W2A16 { get; } = new("W2A16", QuantSpec.Weight(2, WeightOnlyGroupSize), QuantSpec.FullPrecision);

    /// <summary>The four columns of the paper's table: W8A8, W4A8, W4A4, W3A3.</summary>
    public static IReadOnlyList<BitSetting> Defaults { get; } = [W8A8, W4A8, W4A4, W3A3];

    /// <summary>Every named setting <see cref="Parse"/> knows: the defaults, W6A6, and the weight-only W4A16, W3A16, W2A16.</summary>
    public static IReadOnlyList<BitSetting> Named { get; } = [.. Defaults, W6A6, W4A16, W3A16, W2A16];

    /// <summary>The named setting <paramref name="name"/> (case-insensitive), e.g. "w4a4" (<see cref="Named"/>).</summary>
    /// <exception cref="ArgumentException">No named setting has that name.</exception>
    public static BitSetting Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Named.FirstOrDefault(b => string.Equals(b.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"bit setting '{name}' is unknown; the named settings are {string.Join(", ", Named.Select(b => b.Name))} (other specs: construct a BitSetting).", nameof(name));
    }

    /// <summary>"W4A4 (weights int4 g64 sym, activations int4 g64 sym)".</summary>
    public string Describe() => $"{Name} (weights {Weights}, activations {Activations})";
}
