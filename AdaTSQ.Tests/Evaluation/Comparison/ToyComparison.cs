using AdaTSQ.Calibration;
using AdaTSQ.Evaluation;
using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Evaluation.Comparison;

/// <summary>
/// A toy "generator" for the comparison tests: x_T [n, 1, 16, 16] → flatten → Linear(256, 128) → GELU →
/// Linear(128, 256) → tanh, with seeded weights, and counters of how often the grid sampled and configured.
/// </summary>
internal sealed class ToyComparison : IDisposable
{
    public ToyComparison(string cacheDirectory, int samples = 20, int chunkSize = 8)
    {
        torch.manual_seed(7);
        Model = nn.Sequential(("fc1", nn.Linear(256, 128)), ("act", nn.GELU()), ("fc2", nn.Linear(128, 256)));
        Model.eval();
        using (var g = new Generator(11))
            CalibrationInputs = Enumerable.Range(0, 2).Select(_ => torch.randn([16, 256], generator: g)).ToList();
        Options = new ComparisonOptions
        {
            Evaluation = new ChunkedEvaluationOptions { Samples = samples, ChunkSize = chunkSize, Seed = 3, SampleShape = [1, 16, 16] },
            CacheDirectory = cacheDirectory,
            ModelIdentity = "toy-mlp seed 7",
            Context = new Dictionary<string, string> { ["steps"] = "1" },
        };
    }

    public TorchSharp.Modules.Sequential Model { get; }

    public List<Tensor> CalibrationInputs { get; }

    public ComparisonOptions Options { get; set; }

    public int SampledChunks { get; private set; }

    public List<string> Configured { get; } = [];

    /// <summary>The "sampler": one forward pass of the model as it is at call time.</summary>
    public Tensor Sample(EvaluationChunk chunk, CancellationToken ct)
    {
        SampledChunks++;
        using var _ = torch.no_grad();
        var flat = chunk.Noise.reshape(chunk.Count, 256);
        return ((Tensor)Model.call(flat)).tanh().reshape(chunk.Count, 1, 16, 16);
    }

    public ModelComparison Comparison(Func<EvaluationChunk, CancellationToken, Tensor>? sampler = null) =>
        new(Model, sampler is null ? Sample : (c, t) => sampler(c, t), Options);

    /// <summary>A method that counts its configurations; <paramref name="extra"/> adds calibration, GPTQ …</summary>
    public ComparisonMethod Method(string name, Action<QuantizationBuilder, BitSetting>? extra = null) =>
        new(name, $"toy {name}", (builder, bits) =>
        {
            Configured.Add($"{name}/{bits.Name}");
            extra?.Invoke(builder, bits);
        });

    public ComparisonMethod Rtn() => Method("rtn");

    public ComparisonMethod Gptq() => Method("gptq", (b, _) => b.CalibrationData(new ModuleCalibrationSource(Model, CalibrationInputs)).UseHessianOptimization());

    public void Dispose()
    {
        foreach (var t in CalibrationInputs) t.Dispose();
        Model.Dispose();
    }

    public static string TempDirectory() => Path.Combine(Path.GetTempPath(), "adatsq-compare-" + Guid.NewGuid().ToString("N"));
}
