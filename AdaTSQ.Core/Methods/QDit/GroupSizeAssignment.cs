using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// Q-DiT's granularity allocation: one group size per layer (0 = per output channel), as its search chose it. Saved and
/// read as JSON (<see cref="ToJson"/>, <see cref="Save"/>, <see cref="Load"/>); <see cref="ToPolicy"/> turns it into the
/// static per-layer policy whose <see cref="QuantSpec"/>s carry the group sizes.
/// </summary>
/// <remarks>
/// <code>
/// { "format": "adatsq-qdit-group-sizes", "version": 1, "group_sizes": { "blocks.0.attn.qkv": 64, "blocks.0.mlp.fc2": 0, … } }
/// </code>
/// </remarks>
public sealed class GroupSizeAssignment
{
    /// <summary>The value of the <c>format</c> field.</summary>
    public const string Format = "adatsq-qdit-group-sizes";

    /// <summary>The format version written, and the only one read.</summary>
    public const int Version = 1;

    private readonly SortedDictionary<string, int> _groups;

    /// <summary>Creates the assignment.</summary>
    /// <param name="groupSizes">Group size per layer name (0 = per channel).</param>
    /// <exception cref="ArgumentException">Empty, a blank name, or a negative group size.</exception>
    public GroupSizeAssignment(IReadOnlyDictionary<string, int> groupSizes)
    {
        ArgumentNullException.ThrowIfNull(groupSizes);
        if (groupSizes.Count == 0) throw new ArgumentException("an assignment needs at least one layer.", nameof(groupSizes));
        foreach (var (name, g) in groupSizes)
        {
            if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a layer name is blank.", nameof(groupSizes));
            if (g < 0) throw new ArgumentException($"layer '{name}': group size {g} must be positive, or 0 for per channel.", nameof(groupSizes));
        }
        _groups = new SortedDictionary<string, int>(groupSizes.ToDictionary(p => p.Key, p => p.Value), StringComparer.Ordinal);
    }

    /// <summary>The group size of every layer (0 = per channel), by name in ordinal order.</summary>
    public IReadOnlyDictionary<string, int> GroupSizes => _groups;

    /// <summary>The group size of <paramref name="layer"/> (0 = per channel).</summary>
    /// <exception cref="KeyNotFoundException">The layer is not in the assignment.</exception>
    public int this[string layer] => _groups.TryGetValue(layer, out int g) ? g
        : throw new KeyNotFoundException($"layer '{layer}' is not in the Q-DiT assignment (it has {_groups.Count} layers, e.g. {_groups.Keys.First()}).");

    /// <summary>
    /// The static policy of this assignment: each named layer gets <see cref="QDitOptions.ConfigFor"/> at its group size;
    /// layers not named get <see cref="LayerQuantConfig.FullPrecision"/>.
    /// </summary>
    public StaticTimestepPolicy ToPolicy(QuantSpec weightTemplate, QuantSpec activationTemplate, QDitOptions? options = null)
    {
        var o = options ?? new QDitOptions();
        return new StaticTimestepPolicy(LayerQuantConfig.FullPrecision,
            _groups.ToDictionary(p => p.Key, p => o.ConfigFor(p.Value, weightTemplate, activationTemplate), StringComparer.Ordinal));
    }

    /// <summary>How many layers use each group size, e.g. <c>g32 ×4, g64 ×20, per-channel ×6</c>.</summary>
    public string Histogram() => string.Join(", ", _groups.Values.GroupBy(g => g).OrderBy(g => g.Key == 0 ? int.MaxValue : g.Key)
        .Select(g => $"{Label(g.Key)} ×{g.Count()}"));

    /// <summary>One line per layer: name and group size.</summary>
    public string FormatTable()
    {
        int width = Math.Max(5, _groups.Keys.Max(k => k.Length));
        var sb = new StringBuilder();
        sb.Append("layer".PadRight(width)).AppendLine("  group");
        foreach (var (name, g) in _groups) sb.Append(name.PadRight(width)).Append("  ").AppendLine(Label(g));
        return sb.ToString();
    }

    /// <summary>The assignment as JSON (format above).</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["format"] = Format,
            ["version"] = Version,
            ["group_sizes"] = new JsonObject(_groups.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads an assignment written by <see cref="ToJson"/>.</summary>
    /// <exception cref="PolicyFormatException">Not valid JSON, another format or version, or a bad entry (named).</exception>
    public static GroupSizeAssignment FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? root;
        try { root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw new PolicyFormatException($"Q-DiT group sizes: not valid JSON ({e.Message}).", e); }
        if (root is not JsonObject o) throw new PolicyFormatException("Q-DiT group sizes: the JSON is not an object.");
        string? format = (o["format"] as JsonValue)?.TryGetValue(out string? f) == true ? f : null;
        if (format != Format) throw new PolicyFormatException($"Q-DiT group sizes: format is '{format ?? "(missing)"}', expected '{Format}'.");
        int? version = (o["version"] as JsonValue)?.TryGetValue(out int v) == true ? v : null;
        if (version != Version) throw new PolicyFormatException($"Q-DiT group sizes: version {version?.ToString(CultureInfo.InvariantCulture) ?? "(missing)"} is not supported; expected {Version}.");
        if (o["group_sizes"] is not JsonObject groups || groups.Count == 0) throw new PolicyFormatException("Q-DiT group sizes: 'group_sizes' is missing or empty.");
        var read = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, node) in groups)
        {
            if (node is not JsonValue value || !value.TryGetValue(out int g) || g < 0)
                throw new PolicyFormatException($"Q-DiT group sizes: layer '{name}' has '{node?.ToJsonString() ?? "null"}', expected a group size ≥ 0 (0 = per channel).");
            read[name] = g;
        }
        return new GroupSizeAssignment(read);
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/>.</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        File.WriteAllText(path, ToJson());
    }

    /// <summary>Reads an assignment saved by <see cref="Save"/>.</summary>
    /// <exception cref="PolicyFormatException">The file's content is not a valid assignment.</exception>
    public static GroupSizeAssignment Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        try { return FromJson(File.ReadAllText(path)); }
        catch (PolicyFormatException e) { throw new PolicyFormatException($"{path}: {e.Message}", e); }
    }

    private static string Label(int g) => g == 0 ? "per-channel" : $"g{g}";
}
