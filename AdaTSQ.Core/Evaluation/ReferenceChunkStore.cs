using AdaTSQ.IO;
using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// Reference images (e.g. the full-precision samples) kept on disk, one safetensors file per chunk, so that
/// settings evaluated one after another can be compared with them while only one chunk is in memory. A
/// 28×28 single-channel float32 image takes 3 KB (3 MB per 1,000 samples).
/// </summary>
public sealed class ReferenceChunkStore
{
    /// <summary>Uses <paramref name="directory"/> (created if missing).</summary>
    public ReferenceChunkStore(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory.CreateDirectory(directory);
        DirectoryPath = directory;
    }

    /// <summary>Where the chunk files are.</summary>
    public string DirectoryPath { get; }

    /// <summary>The file of chunk <paramref name="index"/>.</summary>
    public string PathOf(int index) => Path.Combine(DirectoryPath, $"chunk-{index:D5}.safetensors");

    /// <summary>Writes <paramref name="chunk"/>'s reference images (overwriting an older file).</summary>
    public void Save(EvaluationChunk chunk, Tensor images) =>
        SafeTensors.Save(PathOf(chunk.Index), [("images", images)], new Dictionary<string, string>
        {
            ["start"] = chunk.Start.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["count"] = chunk.Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });

    /// <summary>Reads <paramref name="chunk"/>'s reference images onto <paramref name="device"/> (the caller disposes them).</summary>
    /// <exception cref="InvalidDataException">The file is missing or was written for another chunk layout.</exception>
    public Tensor Load(EvaluationChunk chunk, Device? device = null)
    {
        string path = PathOf(chunk.Index);
        if (!File.Exists(path)) throw new InvalidDataException($"reference chunk {chunk.Index} ({path}) is missing: the reference run must come first.");
        var (_, meta, _) = SafeTensors.ReadHeader(path);
        if (meta.GetValueOrDefault("start") != chunk.Start.ToString(System.Globalization.CultureInfo.InvariantCulture)
            || meta.GetValueOrDefault("count") != chunk.Count.ToString(System.Globalization.CultureInfo.InvariantCulture))
            throw new InvalidDataException($"{path} holds samples from {meta.GetValueOrDefault("start")} ({meta.GetValueOrDefault("count")} of them), not chunk {chunk.Index} ({chunk.Start}, {chunk.Count}).");
        var tensors = SafeTensors.Load(path, device);
        if (!tensors.Remove("images", out var images))
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new InvalidDataException($"{path} holds no 'images' tensor.");
        }
        foreach (var t in tensors.Values) t.Dispose();
        return images;
    }
}
