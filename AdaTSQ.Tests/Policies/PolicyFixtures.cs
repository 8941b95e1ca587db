using AdaTSQ.Abstractions;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;

namespace AdaTSQ.Tests.Policies;

/// <summary>Configs and small policies shared by the policy tests.</summary>
internal static class PolicyFixtures
{
    public static readonly LayerQuantConfig W4A8 = LayerQuantConfig.Create(4, 8);
    public static readonly LayerQuantConfig W8A8 = LayerQuantConfig.Create(8, 8);
    public static readonly LayerQuantConfig W6A8 = LayerQuantConfig.Create(6, 8);

    /// <summary>Every field away from its default: asymmetric int3 weights in groups of 16 clipped at 0.9, static asymmetric int6 activations.</summary>
    public static readonly LayerQuantConfig Odd = new(QuantSpec.Weight(3, groupSize: 16, symmetric: false, clipRatio: 0.9), QuantSpec.Activation(6, dynamic: false, symmetric: false, clipRatio: 0.75));

    public static readonly string[] Layers = ["blocks.0.attn.qkv", "blocks.0.mlp.fc1", "head"];

    /// <summary>Layer l at step k: W8A8, W4A8, Odd cycling with k + l; other layers W6A8.</summary>
    public static DynamicTimestepPolicy Dynamic(int steps = 6) => new(Layers,
        Enumerable.Range(0, steps).Select(k => (IReadOnlyList<LayerQuantConfig>)Layers.Select((_, l) => ((k + l) % 3) switch { 0 => W8A8, 1 => W4A8, _ => Odd }).ToList()).ToList(),
        otherLayers: W6A8, name: "test dynamic");

    /// <summary>Steps 0–1 W4A8; 2–4 W8A8 with head at Odd; 5 Odd.</summary>
    public static TimeGroupedTimestepPolicy Grouped() => new([
        new TimestepGroup(0, 1, new StaticTimestepPolicy(W4A8)),
        new TimestepGroup(2, 4, new StaticTimestepPolicy(W8A8, new Dictionary<string, LayerQuantConfig> { ["head"] = Odd })),
        new TimestepGroup(5, 5, new StaticTimestepPolicy(Odd)),
    ], name: "test grouped");

    public static StaticTimestepPolicy Static() => new(W4A8, new Dictionary<string, LayerQuantConfig> { ["head"] = Odd, ["blocks.0.mlp.fc1"] = W8A8 });

    public static IEnumerable<ITimestepPolicy> AllKinds() => [Static(), Grouped(), Dynamic()];

    public static TimestepInfo Step(int index, int count) => new(index, count, count - 1 - index);
}
