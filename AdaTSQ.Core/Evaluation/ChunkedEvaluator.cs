using AdaTSQ.Abstractions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// Runs an evaluation chunk by chunk so that its memory does not depend on the sample count: each chunk's
/// noise, labels, generated and reference images live inside one dispose scope and are freed before the next
/// chunk; what survives is what the caller keeps (a <see cref="SettingAccumulator"/>'s per-image rows).
/// Model-agnostic: the caller's <see cref="ChunkSampler"/> does the sampling. Chunk i's noise and labels are the
/// same for every setting evaluated with equal options, so settings are compared on the same x_T; with
/// <see cref="NoiseScheme.PerSample"/> they do not depend on the chunk size either.
/// </summary>
public sealed class ChunkedEvaluator
{
    private readonly ILogger _log;

    /// <summary>Creates the evaluator; the noise is made on <paramref name="device"/> (default CPU).</summary>
    /// <exception cref="ArgumentException">The options are invalid (every problem is listed).</exception>
    public ChunkedEvaluator(ChunkedEvaluationOptions options, Device? device = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Problems();
        if (problems.Count > 0) throw new ArgumentException("invalid evaluation options: " + string.Join(" ", problems), nameof(options));
        Options = options;
        Device = device ?? torch.CPU;
        _log = logger ?? NullLogger.Instance;
    }

    /// <summary>The options.</summary>
    public ChunkedEvaluationOptions Options { get; }

    /// <summary>Where the noise is made.</summary>
    public Device Device { get; }

    /// <summary>Number of chunks (the last one may be smaller).</summary>
    public int ChunkCount => (Options.Samples + Options.ChunkSize - 1) / Options.ChunkSize;

    /// <summary>
    /// Chunk <paramref name="index"/>'s noise and labels, as new tensors in the current dispose scope (the
    /// caller frees them). Deterministic: equal options give equal tensors.
    /// </summary>
    public EvaluationChunk CreateChunk(int index)
    {
        if (index < 0 || index >= ChunkCount) throw new ArgumentOutOfRangeException(nameof(index), index, $"the evaluation has {ChunkCount} chunks.");
        int start = index * Options.ChunkSize;
        int count = Math.Min(Options.ChunkSize, Options.Samples - start);
        var labelValues = Enumerable.Range(start, count).Select(i => (long)(i % Options.Classes)).ToArray();
        var labels = torch.tensor(labelValues, device: Device);
        return new EvaluationChunk(index, start, Noise(start, count), labels, labelValues);
    }

    /// <summary>
    /// Calls <paramref name="body"/> for every chunk in order, each inside its own dispose scope (tensors the
    /// body makes without moving them out are freed after it returns), and reports progress in samples.
    /// </summary>
    public void ForEachChunk(Action<EvaluationChunk> body, IProgress<QuantizationProgress>? progress = null, string stage = "evaluate", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        _log.LogDebug("{Stage}: {Samples} samples in {Chunks} chunks of {ChunkSize}", stage, Options.Samples, ChunkCount, Options.ChunkSize);
        progress?.Report(new QuantizationProgress(stage, 0, Options.Samples));
        for (int i = 0; i < ChunkCount; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int done;
            using (torch.NewDisposeScope())
            {
                var chunk = CreateChunk(i);
                body(chunk);
                done = chunk.Start + chunk.Count;
            }
            progress?.Report(new QuantizationProgress(stage, done, Options.Samples, $"chunk {i + 1}/{ChunkCount}"));
        }
    }

    /// <summary>
    /// Evaluates one setting: samples every chunk with <paramref name="sampler"/> and adds the images to
    /// <paramref name="accumulator"/> against <paramref name="reference"/>'s images for the same chunk (null: the
    /// images themselves, as for the full-precision row). <paramref name="onSampled"/> sees each chunk's images
    /// before they are freed (e.g. to store them as the reference for later settings). The sampled images are
    /// freed after each chunk even when the sampler detached them from the dispose scope.
    /// </summary>
    public void Evaluate(ChunkSampler sampler, SettingAccumulator accumulator, Func<EvaluationChunk, Tensor>? reference = null,
        Action<EvaluationChunk, Tensor>? onSampled = null, IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(accumulator);
        ForEachChunk(chunk =>
        {
            using var images = sampler(chunk, cancellationToken);
            CheckImages(images, chunk, "the sampler");
            onSampled?.Invoke(chunk, images);
            if (reference is null)
            {
                accumulator.Add(images, images, chunk.LabelValues);
                return;
            }
            using var target = reference(chunk);
            CheckImages(target, chunk, "the reference");
            accumulator.Add(images, target, chunk.LabelValues);
        }, progress, accumulator.Name, cancellationToken);
        _log.LogInformation("{Setting}: {Count} samples evaluated", accumulator.Name, accumulator.Count);
    }

    private static void CheckImages(Tensor images, EvaluationChunk chunk, string who)
    {
        if (images.Dimensions < 1 || images.shape[0] != chunk.Count)
            throw new InvalidOperationException($"{who} returned [{string.Join(", ", images.shape)}] for chunk {chunk.Index} of {chunk.Count} samples.");
    }

    private Tensor Noise(int start, int count)
    {
        var shape = Options.SampleShape;
        if (Options.Noise == NoiseScheme.SharedStream)
        {
            using var generator = new Generator((ulong)Options.Seed, Device);
            using var all = torch.randn([Options.Samples, .. shape], generator: generator, device: Device);
            return all[start..(start + count)].clone();
        }
        var samples = new Tensor[count];
        try
        {
            for (int j = 0; j < count; j++)
            {
                using var generator = new Generator(SampleSeed(Options.Seed, start + j), Device);
                samples[j] = torch.randn(shape, generator: generator, device: Device);
            }
            return torch.stack(samples);
        }
        finally
        {
            foreach (var s in samples) s?.Dispose();
        }
    }

    /// <summary>The generator seed of sample <paramref name="index"/>: SplitMix64 of (seed, index), so neighbouring samples get unrelated streams.</summary>
    internal static ulong SampleSeed(long seed, int index)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)index + 1);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}
