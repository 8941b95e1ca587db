using System.Text.Json;
using AdaTSQ.IO;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>
/// Loads a DiT from a safetensors file or a PyTorch state-dict file (such as the official
/// <c>DiT-XL-2-256x256.pt</c>): the configuration comes from a safetensors file's <c>config</c> metadata
/// (written by this library) or is given (e.g. <c>DiTConfig.Named("DiT-XL/2")</c> for official weights).
/// The whole file is checked against the model before anything is copied.
/// </summary>
public static class DiTCheckpoint
{
    /// <summary>The configuration recorded in <paramref name="path"/>'s metadata, or null.</summary>
    public static DiTConfig? ReadConfig(string path)
    {
        if (StateDictFile.IsPyTorchZip(path)) return null;
        var meta = SafeTensors.ReadHeader(path).Metadata;
        if (!meta.TryGetValue("config", out var json)) return null;
        try { return JsonSerializer.Deserialize<DiTConfig>(json); }
        catch (JsonException e) { throw new CheckpointException(path, $"its 'config' metadata is not a DiT configuration: {e.Message}"); }
    }

    /// <summary>Creates the model and loads its weights, in eval mode, on <paramref name="device"/>.</summary>
    public static DiT Load(string path, DiTConfig? config = null, Device? device = null)
    {
        config ??= ReadConfig(path) ?? throw new CheckpointException(path, "it records no DiT configuration; pass one (e.g. DiTConfig.Named(\"DiT-XL/2\")).");
        var model = new DiT(config, device: device);
        try
        {
            StateDictFile.LoadInto(model, path);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
