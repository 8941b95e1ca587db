using AdaTSQ.Quantization;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// Cost of a QuantLinear forward with fake quantization against the plain float layer, for a
/// DiT-XL-sized projection (1152 → 1152) on 256 tokens. Fake quantization computes in float, so this
/// measures the overhead of simulating quantization, not an integer-kernel speed-up.
/// </summary>
[MemoryDiagnoser]
public class QuantLinearBenchmarks
{
    private QuantLinear _layer = null!;
    private Tensor _input = null!;

    /// <summary>The layer config under test.</summary>
    [Params("W16A16", "W8A16", "W4A16", "W8A8", "W4A8")]
    public string Config { get; set; } = "W16A16";

    [GlobalSetup]
    public void Setup()
    {
        torch.manual_seed(0);
        var linear = nn.Linear(1152, 1152);
        _layer = new QuantLinear("proj", linear);
        int w = int.Parse(Config[1..Config.IndexOf('A')]), a = int.Parse(Config[(Config.IndexOf('A') + 1)..]);
        if (w < 16) _layer.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, QuantSpec.Weight(w)));
        _layer.DefaultConfig = LayerQuantConfig.Create(w, a);
        _input = torch.randn(256, 1152);
    }

    [Benchmark]
    public float Forward()
    {
        using var noGrad = torch.no_grad();
        using var y = _layer.call(_input);
        return y[0, 0].item<float>();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _layer.Dispose();
        _input.Dispose();
    }
}
