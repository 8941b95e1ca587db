using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// Comparison cells on disk, one JSON file per cell named by method, bits and fingerprint. Writes are atomic: the
/// cell goes to a temporary file in the same directory, which is renamed over the final name only once it is
/// complete, so an interrupted write (a kill, a cancellation, a full disk) never leaves a half-written file under
/// the final name. A file that cannot be read (corrupt, another schema) is treated as missing.
/// </summary>
public sealed class CellCache
{
    /// <summary>The JSON options of cell files (indented; NaN and ±∞ as named literals).</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    private readonly ILogger _log;

    /// <summary>Uses <paramref name="directory"/> (created if missing).</summary>
    public CellCache(string directory, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory.CreateDirectory(directory);
        DirectoryPath = directory;
        _log = logger ?? NullLogger.Instance;
    }

    /// <summary>Where the cell files are.</summary>
    public string DirectoryPath { get; }

    /// <summary>The file of the cell (<paramref name="method"/>, <paramref name="bits"/>) with <paramref name="fingerprint"/>.</summary>
    public string PathOf(string method, string bits, string fingerprint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(fingerprint);
        return Path.Combine(DirectoryPath, $"{Safe(method)}__{Safe(bits)}__{fingerprint[..Math.Min(16, fingerprint.Length)]}.json");
    }

    /// <summary>The cached cell, or null when there is none (or it cannot be read, or its fingerprint differs).</summary>
    public ComparisonCell? TryLoad(string method, string bits, string fingerprint)
    {
        string path = PathOf(method, bits, fingerprint);
        if (!File.Exists(path)) return null;
        try
        {
            var cell = JsonSerializer.Deserialize<ComparisonCell>(File.ReadAllText(path), JsonOptions);
            if (cell is not null && cell.Fingerprint == fingerprint && cell.Method == method && cell.Bits == bits) return cell;
            _log.LogWarning("{Path} holds another cell; it is recomputed", path);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            _log.LogWarning("{Path} cannot be read ({Message}); the cell is recomputed", path, e.Message);
        }
        return null;
    }

    /// <summary>Writes <paramref name="cell"/> atomically under <see cref="PathOf"/>; returns the path.</summary>
    /// <exception cref="OperationCanceledException">Cancelled before the rename; no file is left under either name.</exception>
    public string Save(ComparisonCell cell, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cell);
        string path = PathOf(cell.Method, cell.Bits, cell.Fingerprint);
        AtomicFile.Write(path, stream => JsonSerializer.Serialize(stream, cell, JsonOptions), cancellationToken);
        return path;
    }

    /// <summary>Deletes the cell's file if it exists.</summary>
    public void Delete(string method, string bits, string fingerprint) => File.Delete(PathOf(method, bits, fingerprint));

    private static string Safe(string name) =>
        string.Concat(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
}
