using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// One chunk of an evaluation: samples [<see cref="Start"/>, <see cref="Start"/> + <see cref="Count"/>), their
/// initial noise and requested labels. The tensors belong to the <see cref="ChunkedEvaluator"/> and are freed
/// when the chunk is done.
/// </summary>
/// <param name="Index">Chunk number (0 = first).</param>
/// <param name="Start">Index of the chunk's first sample.</param>
/// <param name="Noise">x_T of the chunk's samples, <c>[Count, C, H, W]</c>.</param>
/// <param name="Labels">Requested classes, <c>[Count]</c> int64.</param>
/// <param name="LabelValues">The same labels as an array.</param>
public readonly record struct EvaluationChunk(int Index, int Start, Tensor Noise, Tensor Labels, long[] LabelValues)
{
    /// <summary>Samples in this chunk.</summary>
    public int Count => LabelValues.Length;
}

/// <summary>Samples a chunk: returns the generated images <c>[chunk.Count, C, H, W]</c> for its noise and labels.</summary>
public delegate Tensor ChunkSampler(EvaluationChunk chunk, CancellationToken cancellationToken);
