using System.Text.RegularExpressions;

namespace AdaTSQ.Quantization;

/// <summary>
/// Chooses layers by their dotted names with glob patterns: <c>*</c> matches any run of characters
/// (dots included), <c>?</c> one character. A layer is selected when it matches some include pattern
/// (all layers when there is none) and no exclude pattern.
/// </summary>
/// <example><c>new LayerSelector(["blocks.*"], ["*.adaLN_modulation.*"])</c></example>
public sealed class LayerSelector
{
    private readonly Regex[] _include;
    private readonly Regex[] _exclude;

    /// <summary>Selects every layer.</summary>
    public static LayerSelector All { get; } = new([], []);

    /// <summary>Creates a selector from include and exclude patterns.</summary>
    public LayerSelector(IEnumerable<string> include, IEnumerable<string> exclude)
    {
        Include = include.ToArray();
        Exclude = exclude.ToArray();
        foreach (var p in Include.Concat(Exclude))
            if (string.IsNullOrWhiteSpace(p)) throw new ArgumentException("A layer pattern must not be empty.");
        _include = Include.Select(ToRegex).ToArray();
        _exclude = Exclude.Select(ToRegex).ToArray();
    }

    /// <summary>The include patterns (empty = all layers).</summary>
    public IReadOnlyList<string> Include { get; }

    /// <summary>The exclude patterns.</summary>
    public IReadOnlyList<string> Exclude { get; }

    /// <summary>True when <paramref name="layerName"/> is selected.</summary>
    public bool Matches(string layerName) =>
        (_include.Length == 0 || _include.Any(r => r.IsMatch(layerName))) && !_exclude.Any(r => r.IsMatch(layerName));

    /// <inheritdoc />
    public override string ToString() =>
        (Include.Count == 0 ? "all layers" : string.Join(", ", Include)) + (Exclude.Count == 0 ? "" : " except " + string.Join(", ", Exclude));

    private static Regex ToRegex(string glob) =>
        new("^" + Regex.Escape(glob).Replace(@"\*", ".*").Replace(@"\?", ".") + "$", RegexOptions.CultureInvariant);
}
