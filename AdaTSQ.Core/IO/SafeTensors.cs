using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.IO;

/// <summary>
/// Reads and writes the safetensors format (8-byte little-endian header length, a JSON header of
/// <c>{name: {dtype, shape, data_offsets}}</c> plus optional <c>__metadata__</c>, then raw
/// little-endian data), and loads a file into a module's state dict with full checking first.
/// </summary>
public static class SafeTensors
{
    /// <summary>One tensor's entry in a file header.</summary>
    /// <param name="Name">Tensor name.</param>
    /// <param name="DType">Element type.</param>
    /// <param name="Shape">Shape.</param>
    /// <param name="Begin">Start of its data, relative to the data section.</param>
    /// <param name="End">End of its data (exclusive).</param>
    public sealed record Entry(string Name, ScalarType DType, long[] Shape, long Begin, long End);

    private static readonly Dictionary<string, ScalarType> DTypes = new()
    {
        ["F64"] = ScalarType.Float64, ["F32"] = ScalarType.Float32, ["F16"] = ScalarType.Float16, ["BF16"] = ScalarType.BFloat16,
        ["I64"] = ScalarType.Int64, ["I32"] = ScalarType.Int32, ["I16"] = ScalarType.Int16, ["I8"] = ScalarType.Int8,
        ["U8"] = ScalarType.Byte, ["BOOL"] = ScalarType.Bool,
    };

    /// <summary>
    /// Writes <paramref name="tensors"/> (any device; copied to CPU) and <paramref name="metadata"/> to
    /// <paramref name="path"/>, atomically: a reader never sees a half-written file.
    /// </summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var dup = list.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"tensor name '{dup.Key}' appears twice.", nameof(tensors));
        var header = new JsonObject();
        if (metadata is { Count: > 0 }) header["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value))));
        long offset = 0;
        foreach (var (name, t) in list)
        {
            string code = DTypes.FirstOrDefault(kv => kv.Value == t.dtype).Key ?? throw new ArgumentException($"tensor '{name}' has dtype {t.dtype}, which safetensors files here do not support.", nameof(tensors));
            long bytes = t.numel() * t.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = code,
                ["shape"] = new JsonArray(t.shape.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes)),
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        Array.Fill(headerBytes, (byte)' ');
        json.CopyTo(headerBytes, 0);

        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + "." + Guid.NewGuid().ToString("N") + ".tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                stream.Write(len);
                stream.Write(headerBytes);
                foreach (var (_, t) in list)
                {
                    using var cpu = t.detach().cpu().contiguous();
                    stream.Write(cpu.bytes);
                }
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Reads the header of <paramref name="path"/>: its entries and metadata, checking that every offset lies in the file.</summary>
    public static (IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "the file does not exist.");
        long fileLength = new FileInfo(path).Length;
        using var stream = File.OpenRead(path);
        Span<byte> len = stackalloc byte[8];
        if (stream.Read(len) != 8) throw new CheckpointException(path, $"truncated: {fileLength} bytes is too short for a safetensors header.");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (headerLength == 0 || headerLength > 100_000_000 || (long)headerLength > fileLength - 8)
            throw new CheckpointException(path, $"header length {headerLength} does not fit a {fileLength}-byte file: not a safetensors file, or truncated.");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        JsonObject header;
        try { header = JsonNode.Parse(headerBytes)?.AsObject() ?? throw new JsonException("empty header"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new CheckpointException(path, $"the header is not valid JSON: {e.Message}"); }
        long dataStart = 8 + (long)headerLength, dataLength = fileLength - dataStart;
        var metadata = new Dictionary<string, string>();
        var entries = new List<Entry>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) metadata[k] = v?.ToString() ?? "";
                continue;
            }
            try
            {
                var o = node!.AsObject();
                string code = o["dtype"]!.GetValue<string>();
                if (!DTypes.TryGetValue(code, out var dtype)) throw new CheckpointException(path, $"tensor '{name}' has dtype {code}, which is not supported.");
                var shape = o["shape"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
                var offs = o["data_offsets"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
                long expected = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);
                if (offs.Length != 2 || offs[0] < 0 || offs[1] - offs[0] != expected)
                    throw new CheckpointException(path, $"tensor '{name}' [{string.Join(", ", shape)}] {code} needs {expected} bytes, but its offsets are [{string.Join(", ", offs)}].");
                if (offs[1] > dataLength)
                    throw new CheckpointException(path, $"truncated: tensor '{name}' ends at byte {offs[1]} of the data section, which has {dataLength} bytes.");
                entries.Add(new Entry(name, dtype, shape, offs[0], offs[1]));
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
            {
                throw new CheckpointException(path, $"the header entry of '{name}' is malformed ({e.Message}).");
            }
        }
        return (entries, metadata, dataStart);
    }

    /// <summary>Reads every tensor of <paramref name="path"/> onto <paramref name="device"/> (CPU by default). The caller disposes them.</summary>
    public static Dictionary<string, Tensor> Load(string path, Device? device = null)
    {
        var (entries, _, dataStart) = ReadHeader(path);
        var result = new Dictionary<string, Tensor>();
        try
        {
            using var stream = File.OpenRead(path);
            foreach (var e in entries) result[e.Name] = ReadTensor(stream, dataStart, e, device);
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies the tensors of <paramref name="path"/> into <paramref name="module"/>'s parameters and
    /// buffers (converting dtype, keeping each on its device). Every name and shape is checked first,
    /// and every tensor is read before the first is copied; on any mismatch nothing is copied and a
    /// <see cref="CheckpointException"/> lists all of them. (<see cref="StateDictFile.LoadInto"/> also takes PyTorch files.)
    /// </summary>
    /// <param name="module">The model.</param>
    /// <param name="path">A safetensors file.</param>
    /// <param name="strict">When false, missing and unexpected keys are allowed (shapes must still match).</param>
    /// <param name="keyPrefix">Only file keys starting with this prefix are used, without it (e.g. "ema.").</param>
    public static void LoadInto(nn.Module module, string path, bool strict = true, string keyPrefix = "")
    {
        var (entries, _, dataStart) = ReadHeader(path);
        var fileEntries = entries.Where(e => e.Name.StartsWith(keyPrefix, StringComparison.Ordinal))
            .ToDictionary(e => e.Name[keyPrefix.Length..]);
        using var stream = File.OpenRead(path);
        StateDictFile.CopyChecked(module, path, fileEntries.ToDictionary(kv => kv.Key, kv => kv.Value.Shape), strict,
            name => ReadTensor(stream, dataStart, fileEntries[name], null), disposeRead: true);
    }

    /// <summary>Saves <paramref name="module"/>'s state dict (parameters and persistent buffers).</summary>
    public static void SaveModule(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(path, module.state_dict().Select(kv => (kv.Key, kv.Value)), metadata);

    private static Tensor ReadTensor(FileStream stream, long dataStart, Entry e, Device? device)
    {
        var t = torch.empty(e.Shape, dtype: e.DType);
        stream.Position = dataStart + e.Begin;
        stream.ReadExactly(t.bytes);
        if (device is null || device.type == DeviceType.CPU) return t;
        return t.to(device, disposeAfter: true);
    }

    private static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };
}
