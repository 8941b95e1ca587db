using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests;

/// <summary>Seeded tensors for tests.</summary>
internal static class TestTensors
{
    public static Tensor Randn(long seed, params long[] shape)
    {
        var gen = new Generator((ulong)seed);
        return torch.randn(shape, generator: gen);
    }

    /// <summary>Inputs with strongly correlated features, as real activations have: a low-rank part plus 10 % noise.</summary>
    public static Tensor CorrelatedInputs(long n, long features, long seed)
    {
        using var scope = torch.NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var basis = torch.randn([features / 4, features], generator: gen);
        var x = torch.randn([n, features / 4], generator: gen).mm(basis) + torch.randn([n, features], generator: gen) * 0.1;
        return x.MoveToOuterDisposeScope();
    }

    public static double RelativeError(Tensor actual, Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        return (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).norm().item<double>()
            / expected.to(ScalarType.Float64).norm().item<double>();
    }

    /// <summary>Same shape and every element equal (TorchSharp's torch.equal is elementwise).</summary>
    public static bool Identical(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    public static float[] Data(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();
}
