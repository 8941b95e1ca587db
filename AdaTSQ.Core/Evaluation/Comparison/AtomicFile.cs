namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// Writes a file so that it appears under its final name complete or not at all: the content goes to a temporary
/// file beside it (same directory, so the rename stays on one file system), is flushed to disk, and is renamed over
/// the final name; on any failure the temporary file is deleted and the final name keeps its old content.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> with <paramref name="write"/>, atomically.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before the rename.</exception>
    public static void Write(string path, Action<Stream> write, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(write);
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/>, atomically.</summary>
    public static void WriteAllText(string path, string text, CancellationToken cancellationToken = default) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, leaveOpen: true);
            writer.Write(text);
        }, cancellationToken);
}
