using AdaTSQ.Quantization;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>Round-to-nearest quantization of a DiT-XL MLP weight (4608 × 1152) to integer form.</summary>
[MemoryDiagnoser]
public class RtnBenchmarks
{
    private Tensor _weight = null!;

    /// <summary>Weight bits.</summary>
    [Params(8, 4)]
    public int Bits { get; set; }

    /// <summary>Group size (0 = per output channel).</summary>
    [Params(0, 128)]
    public int GroupSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        torch.manual_seed(0);
        _weight = torch.randn(4608, 1152);
    }

    [Benchmark]
    public long Quantize()
    {
        using var q = QuantizedTensor.Quantize(_weight, QuantSpec.Weight(Bits, GroupSize));
        return q.StorageBytes;
    }

    [GlobalCleanup]
    public void Cleanup() => _weight.Dispose();
}
