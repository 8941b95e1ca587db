using System.Collections;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.IO;

/// <summary>
/// Loads model weights from either format a user is likely to have — safetensors, or a PyTorch
/// <c>torch.save(model.state_dict())</c> zip file (<c>.pt</c>/<c>.pth</c>, read with TorchSharp.PyBridge's
/// unpickler, e.g. the official <c>DiT-XL-2-256x256.pt</c>) — with the same guarantee: every name and
/// shape is checked against the model first, and on any mismatch nothing is copied and a
/// <see cref="CheckpointException"/> lists the missing keys, unexpected keys and shape mismatches.
/// The format is detected from the content (a zip archive is PyTorch), not the file name.
/// </summary>
public static class StateDictFile
{
    /// <summary>True when <paramref name="path"/> starts like a zip archive (PyTorch's format since 1.6).</summary>
    public static bool IsPyTorchZip(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "the file does not exist.");
        using var s = File.OpenRead(path);
        Span<byte> sig = stackalloc byte[4];
        return s.Read(sig) == 4 && sig[0] == 0x50 && sig[1] == 0x4b && sig[2] == 0x03 && sig[3] == 0x04;
    }

    /// <summary>Copies the weights in <paramref name="path"/> into <paramref name="module"/>, checked first (see the type's remarks).</summary>
    /// <param name="module">The model.</param>
    /// <param name="path">A safetensors or PyTorch zip state-dict file.</param>
    /// <param name="strict">When false, missing and unexpected keys are allowed (shapes must still match).</param>
    /// <param name="keyPrefix">Only file keys with this prefix are used, without it.</param>
    public static void LoadInto(nn.Module module, string path, bool strict = true, string keyPrefix = "")
    {
        if (!IsPyTorchZip(path))
        {
            SafeTensors.LoadInto(module, path, strict, keyPrefix);
            return;
        }
        var tensors = ReadPyTorch(path);
        try
        {
            var selected = tensors.Where(kv => kv.Key.StartsWith(keyPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[keyPrefix.Length..], kv => kv.Value);
            CopyChecked(module, path, selected.ToDictionary(kv => kv.Key, kv => kv.Value.shape), strict, name => selected[name]);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>Reads every tensor of a PyTorch zip state dict (CPU). The caller disposes them.</summary>
    public static Dictionary<string, Tensor> ReadPyTorch(string path)
    {
        Hashtable table;
        try { table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(path); }
        catch (Exception e) when (e is InvalidDataException or IOException or NotImplementedException or InvalidOperationException or InvalidCastException or Razorvine.Pickle.PickleException)
        {
            throw new CheckpointException(path, $"it is not a readable PyTorch state dict ({e.GetType().Name}: {e.Message}).");
        }
        var result = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry e in table)
        {
            if (e.Key is string name && e.Value is Tensor t) result[name] = t;
            else
            {
                foreach (var v in result.Values) v.Dispose();
                throw new CheckpointException(path, $"entry '{e.Key}' is a {e.Value?.GetType().Name ?? "null"}, not a tensor: save model.state_dict(), not the whole model or a training checkpoint dict.");
            }
        }
        return result;
    }

    /// <summary>
    /// The check-then-copy both formats share: compares <paramref name="fileShapes"/> with the module's
    /// state dict, throws listing every problem, else copies each tensor from <paramref name="read"/>
    /// (which may load lazily; every read happens before the first copy).
    /// </summary>
    internal static void CopyChecked(nn.Module module, string path, IReadOnlyDictionary<string, long[]> fileShapes, bool strict, Func<string, Tensor> read, bool disposeRead = false)
    {
        var targets = module.state_dict();
        var missing = targets.Keys.Where(k => !fileShapes.ContainsKey(k)).ToList();
        var unexpected = fileShapes.Keys.Where(k => !targets.ContainsKey(k)).ToList();
        var shapes = fileShapes.Where(kv => targets.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value))
            .Select(kv => $"{kv.Key}: file [{string.Join(", ", kv.Value)}] vs model [{string.Join(", ", targets[kv.Key].shape)}]").ToList();
        if (shapes.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new CheckpointException(path, $"it does not fit {module.GetType().Name}; nothing was loaded.", missing, unexpected, shapes);

        var loaded = new Dictionary<string, Tensor>();
        try
        {
            foreach (var name in fileShapes.Keys.Where(targets.ContainsKey)) loaded[name] = read(name);
            using var noGrad = torch.no_grad();
            foreach (var (name, value) in loaded) targets[name].copy_(value);
        }
        finally
        {
            if (disposeRead) foreach (var t in loaded.Values) t.Dispose();
        }
    }
}
