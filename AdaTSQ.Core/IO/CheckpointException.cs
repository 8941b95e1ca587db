using AdaTSQ.Abstractions;

namespace AdaTSQ.IO;

/// <summary>
/// A checkpoint that cannot be read or does not fit the model. The message names the file and lists
/// the missing keys, unexpected keys and shape mismatches; the model is left untouched.
/// </summary>
public sealed class CheckpointException : AdaTSQException
{
    /// <summary>Creates the exception.</summary>
    public CheckpointException(string path, string problem, IReadOnlyList<string>? missing = null, IReadOnlyList<string>? unexpected = null, IReadOnlyList<string>? shapeMismatches = null)
        : base(Format(path, problem, missing, unexpected, shapeMismatches))
    {
        FilePath = path;
        MissingKeys = missing ?? [];
        UnexpectedKeys = unexpected ?? [];
        ShapeMismatches = shapeMismatches ?? [];
    }

    /// <summary>The checkpoint file.</summary>
    public string FilePath { get; }
    /// <summary>Model tensors the file lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; }
    /// <summary>File tensors the model lacks.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }
    /// <summary>"name: file [..] vs model [..]" for tensors of different shapes.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; }

    private static string Format(string path, string problem, IReadOnlyList<string>? missing, IReadOnlyList<string>? unexpected, IReadOnlyList<string>? shapes)
    {
        var lines = new List<string> { $"checkpoint '{path}': {problem}" };
        void Add(string title, IReadOnlyList<string>? items)
        {
            if (items is not { Count: > 0 }) return;
            lines.Add($"  {title} ({items.Count}): {string.Join(", ", items.Take(12))}{(items.Count > 12 ? $", … ({items.Count - 12} more)" : "")}");
        }
        Add("missing keys", missing);
        Add("unexpected keys", unexpected);
        Add("shape mismatches", shapes);
        return string.Join(Environment.NewLine, lines);
    }
}
