using System.IO.Compression;
using AdaTSQ.Abstractions;

namespace AdaTSQ.IO;

/// <summary>The error for an IDX file that is missing, truncated or not unsigned-byte IDX.</summary>
public sealed class IdxFormatException(string message) : AdaTSQException(message);

/// <summary>
/// Reads IDX files (the MNIST format: magic 0x0000 08 dd, big-endian dimension sizes, then unsigned
/// bytes), plain or gzipped (detected from the content, not the name).
/// </summary>
public static class IdxFile
{
    /// <summary>Reads <paramref name="path"/>; returns its dimension sizes and its bytes.</summary>
    public static (int[] Shape, byte[] Data) Read(string path)
    {
        if (!File.Exists(path)) throw new IdxFormatException($"IDX file '{path}' does not exist.");
        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            try { gz.CopyTo(output); }
            catch (InvalidDataException e) { throw new IdxFormatException($"IDX file '{path}' is not valid gzip: {e.Message}"); }
            raw = output.ToArray();
        }
        return Parse(raw, path);
    }

    /// <summary>Parses an uncompressed IDX image of unsigned bytes.</summary>
    public static (int[] Shape, byte[] Data) Parse(byte[] raw, string name)
    {
        if (raw.Length < 4 || raw[0] != 0 || raw[1] != 0)
            throw new IdxFormatException($"'{name}' is not an IDX file (bad magic number).");
        if (raw[2] != 0x08) throw new IdxFormatException($"'{name}' holds IDX type 0x{raw[2]:x2}; only unsigned bytes (0x08) are supported.");
        int dims = raw[3];
        if (dims == 0 || raw.Length < 4 + 4 * dims) throw new IdxFormatException($"'{name}' is truncated in its header ({raw.Length} bytes).");
        var shape = new int[dims];
        long count = 1;
        for (int i = 0; i < dims; i++)
        {
            int o = 4 + 4 * i;
            shape[i] = (raw[o] << 24) | (raw[o + 1] << 16) | (raw[o + 2] << 8) | raw[o + 3];
            if (shape[i] < 0) throw new IdxFormatException($"'{name}' has a negative size in dimension {i}.");
            count *= shape[i];
        }
        long offset = 4 + 4 * dims;
        if (raw.Length - offset != count)
            throw new IdxFormatException($"'{name}' should hold {count} values for shape [{string.Join(", ", shape)}], but has {raw.Length - offset} bytes of data.");
        return (shape, raw[(int)offset..]);
    }
}
