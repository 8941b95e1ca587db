using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// The cache key of a comparison cell: SHA-256 over everything that decides its result, given as key/value text
/// (sorted by key, so the order they are listed in does not matter).
/// </summary>
public static class CellFingerprint
{
    /// <summary>Bumped when the cell format or what a cell measures changes, so old caches are not reused.</summary>
    public const string SchemaVersion = "1";

    /// <summary>Lower-case hex SHA-256 of the sorted <c>key=value</c> lines of <paramref name="inputs"/>.</summary>
    /// <exception cref="ArgumentException">A key is empty or holds '=' or a line break, or a value holds a line break.</exception>
    public static string Compute(IReadOnlyDictionary<string, string> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var text = new StringBuilder();
        foreach (var (key, value) in inputs.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (string.IsNullOrEmpty(key) || key.AsSpan().IndexOfAny("=\n\r") >= 0)
                throw new ArgumentException($"fingerprint key '{key}' must be non-empty without '=' or line breaks.", nameof(inputs));
            if (value is null || value.AsSpan().IndexOfAny("\n\r") >= 0)
                throw new ArgumentException($"fingerprint value of '{key}' must be one line of text.", nameof(inputs));
            text.Append(key).Append('=').Append(value).Append('\n');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// The identity of a file by its content: "name (N bytes, sha256 H)". A retrained model under the same path gets
    /// another identity; a copy under another directory keeps it.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static string OfFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"cannot fingerprint {path}: the file does not exist.", path);
        using var stream = File.OpenRead(path);
        string hash = Convert.ToHexStringLower(SHA256.HashData(stream));
        return string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(path)} ({stream.Length} bytes, sha256 {hash})");
    }
}
