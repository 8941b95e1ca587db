using AdaTSQ.Abstractions;
using AdaTSQ.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Evaluation;

public class ChunkedEvaluatorTests
{
    private static ChunkedEvaluationOptions Options(int samples, int chunk, NoiseScheme scheme = NoiseScheme.PerSample) =>
        new() { Samples = samples, ChunkSize = chunk, Seed = 42, SampleShape = [1, 12, 12], Noise = scheme };

    private static Tensor Gather(ChunkedEvaluator evaluator)
    {
        var parts = new List<Tensor>();
        evaluator.ForEachChunk(c => parts.Add(c.Noise.clone().DetachFromDisposeScope()));
        var all = torch.cat(parts);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    [Test]
    public void PerSampleNoiseDoesNotDependOnTheChunkSize()
    {
        using var a = Gather(new ChunkedEvaluator(Options(25, 7)));
        using var b = Gather(new ChunkedEvaluator(Options(25, 25)));
        using var prefix = Gather(new ChunkedEvaluator(Options(10, 4)));
        Assert.That(a.shape, Is.EqualTo(new long[] { 25, 1, 12, 12 }));
        Assert.That(a.allclose(b, 0, 0), "chunks of 7 and one chunk of 25 draw the same x_T");
        Assert.That(prefix.allclose(a[..10], 0, 0), "a smaller evaluation is a prefix of a larger one");
        using var distinct = (a[0] - a[1]).abs().max();
        Assert.That(distinct.item<float>(), Is.GreaterThan(0.1f));
    }

    [Test]
    public void SharedStreamNoiseIsTheOldSingleBatchNoise()
    {
        using var generator = new Generator(42);
        using var old = torch.randn([25, 1, 12, 12], generator: generator);
        using var chunked = Gather(new ChunkedEvaluator(Options(25, 7, NoiseScheme.SharedStream)));
        Assert.That(chunked.allclose(old, 0, 0));
    }

    [Test]
    public void LabelsCycleThroughTheClassesAcrossChunks()
    {
        var labels = new List<long>();
        new ChunkedEvaluator(Options(23, 5)).ForEachChunk(c => labels.AddRange(c.LabelValues));
        Assert.That(labels, Is.EqualTo(Enumerable.Range(0, 23).Select(i => (long)(i % 10))));
    }

    [Test]
    public void InvalidOptionsAreListedTogether()
    {
        var e = Assert.Throws<ArgumentException>(() => new ChunkedEvaluator(new ChunkedEvaluationOptions { Samples = 0, ChunkSize = 0, SampleShape = [1, 0] }));
        Assert.That(e!.Message, Does.Contain("Samples").And.Contain("ChunkSize").And.Contain("SampleShape"));
    }

    [Test]
    public void StoredReferencesComeBackForTheirChunk()
    {
        string dir = Path.Combine(Path.GetTempPath(), "adatsq-ref-" + Guid.NewGuid().ToString("N"));
        try
        {
            var evaluator = new ChunkedEvaluator(Options(30, 8));
            var store = new ReferenceChunkStore(dir);
            Tensor Sample(EvaluationChunk c, CancellationToken _) => c.Noise.tanh();
            var fp = new SettingAccumulator("FP");
            evaluator.Evaluate(Sample, fp, onSampled: store.Save);
            var q = new SettingAccumulator("Q");
            evaluator.Evaluate((c, _) => (c.Noise.tanh() + 0.01).clamp(-1, 1), q, c => store.Load(c));
            Assert.That(fp.Psnr.All(double.IsPositiveInfinity));
            Assert.That(q.Psnr.All(p => p is > 35 and < 60), "a small offset against the stored FP images");
            Assert.Throws<InvalidDataException>(() => new ChunkedEvaluator(Options(30, 10)).Evaluate(Sample, new SettingAccumulator("x"), c => store.Load(c)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void MemoryDoesNotGrowWithTheNumberOfChunks()
    {
        // 20,000 tiny samples in 200 chunks of 100 with a trivial sampler, a classifier and 8-d features:
        // no tensor may outlive its chunk, and the accumulator keeps only per-image rows.
        var evaluator = new ChunkedEvaluator(Options(20_000, 100));
        var scorers = new ImageScorers
        {
            Classify = images => Enumerable.Repeat(3L, (int)images.shape[0]).ToArray(),
            Features = images =>
            {
                using var f = images.reshape(images.shape[0], 8, -1).mean([2]).contiguous();
                return f.data<float>().ToArray();
            },
            FeatureDimension = 8,
        };
        var accumulator = new SettingAccumulator("tiny", scorers);
        var liveAfterChunk = new List<long>();
        Tensor Sample(EvaluationChunk c, CancellationToken _) => (c.Noise * 0.5).tanh().DetachFromDisposeScope();   // detached on purpose: the evaluator must still free it
        long before = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        var progress = new Recorder(() => liveAfterChunk.Add(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount));
        evaluator.Evaluate(Sample, accumulator, c => c.Noise.tanh(), progress: progress);
        long after = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;

        Assert.That(accumulator.Count, Is.EqualTo(20_000));
        Assert.That(accumulator.Correct.Count(c => c), Is.EqualTo(2_000));
        Assert.That(after, Is.EqualTo(before), "tensors alive after the evaluation");
        Assert.That(liveAfterChunk, Has.Count.EqualTo(201));
        Assert.That(liveAfterChunk.Distinct(), Is.EquivalentTo(new[] { before }), "tensors alive after every chunk");
        // The managed state is the per-image rows: PSNR + SSIM (16 B), correctness (1 B) and 8 float features (32 B).
        long rowBytes = (long)accumulator.Count * (8 + 8 + 1 + 8 * 4);
        Assert.That(rowBytes, Is.LessThan(2_000_000));
    }

    private sealed class Recorder(Action onReport) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => onReport();
    }
}
