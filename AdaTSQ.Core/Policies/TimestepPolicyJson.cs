using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// Timestep policies as JSON: static, time-grouped and dynamic ones, every <see cref="QuantSpec"/> in full and
/// validated when read. Configs are stored once in a <c>configs</c> table and referenced by index, one line per
/// step for a dynamic policy, so a 50-step × 100-layer policy stays small and readable.
/// </summary>
/// <remarks>
/// <code>
/// { "format": "adatsq-timestep-policy", "version": 1, "kind": "static" | "time-grouped" | "dynamic", "name": "…",
///   "configs": [ { "weight": SPEC, "activation": SPEC }, … ],
///   static:       "default": 0, "overrides": { "blocks.0.attn.qkv": 1 }
///   time-grouped: "groups": [ { "first": 0, "last": 24, "default": 0, "overrides": { … } }, … ]   (steps inclusive)
///   dynamic:      "layers": [ … ], "other": 0, "table": [ [ config index per layer ], … one row per step ] }
/// SPEC = { "bits": 4, "symmetric": true, "granularity": "PerGroup", "group_size": 64, "dynamic": true, "clip_ratio": 1 }
/// </code>
/// A static policy's name is derived from its configs and is not read back; the others keep theirs.
/// </remarks>
public static class TimestepPolicyJson
{
    /// <summary>The value of the <c>format</c> field.</summary>
    public const string Format = "adatsq-timestep-policy";

    /// <summary>The format version written, and the only one read.</summary>
    public const int Version = 1;

    private static readonly JsonDocumentOptions ReadOptions = new() { AllowDuplicateProperties = false };

    /// <summary>The JSON of <paramref name="policy"/>.</summary>
    /// <exception cref="NotSupportedException">Not a <see cref="StaticTimestepPolicy"/>, <see cref="TimeGroupedTimestepPolicy"/> or <see cref="DynamicTimestepPolicy"/>.</exception>
    public static string ToJson(ITimestepPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var configs = new List<LayerQuantConfig>();
        int Index(LayerQuantConfig c)
        {
            int i = configs.IndexOf(c);
            if (i >= 0) return i;
            configs.Add(c);
            return configs.Count - 1;
        }
        void AddStatic(JsonObject o, StaticTimestepPolicy p)
        {
            o["default"] = Index(p.DefaultConfig);
            o["overrides"] = new JsonObject(p.Overrides.OrderBy(x => x.Key, StringComparer.Ordinal).Select(x => KeyValuePair.Create(x.Key, (JsonNode?)Index(x.Value))));
        }
        var body = new JsonObject();                 // the kind's fields, written after the configs they index
        string kind;
        switch (policy)
        {
            case StaticTimestepPolicy s:
                kind = "static";
                AddStatic(body, s);
                break;
            case TimeGroupedTimestepPolicy g:
                kind = "time-grouped";
                body["groups"] = new JsonArray(g.Groups.Select(x =>
                {
                    var o = new JsonObject { ["first"] = x.FirstStep, ["last"] = x.LastStep };
                    AddStatic(o, x.Policy);
                    return (JsonNode?)o;
                }).ToArray());
                break;
            case DynamicTimestepPolicy d:
                kind = "dynamic";
                body["layers"] = new JsonArray(d.Layers.Select(l => (JsonNode?)l).ToArray());
                body["other"] = Index(d.OtherLayers);
                body["table"] = new JsonArray(Enumerable.Range(0, d.StepCount)
                    .Select(k => (JsonNode?)new JsonArray(d.Layers.Select(l => (JsonNode?)Index(d[k, l])).ToArray())).ToArray());
                break;
            default:
                throw new NotSupportedException($"policy '{policy.Name}' ({policy.GetType().Name}) cannot be written as JSON: the supported kinds are static ({nameof(StaticTimestepPolicy)}), time-grouped ({nameof(TimeGroupedTimestepPolicy)}) and dynamic ({nameof(DynamicTimestepPolicy)}).");
        }
        var root = new JsonObject
        {
            ["format"] = Format, ["version"] = Version, ["kind"] = kind, ["name"] = policy.Name,
            ["configs"] = new JsonArray(configs.Select(c => (JsonNode?)new JsonObject { ["weight"] = Spec(c.Weight), ["activation"] = Spec(c.Activation) }).ToArray()),
        };
        foreach (var key in body.Select(p => p.Key).ToList())
        {
            var value = body[key];
            body.Remove(key);
            root[key] = value;
        }
        return Indented(root);
    }

    /// <summary>Reads a policy written by <see cref="ToJson"/>.</summary>
    /// <exception cref="PolicyFormatException">Malformed JSON, another format or version, an unknown kind, a bad spec, a config
    /// index out of range, rows that do not fit the layers, or groups that do not cover the steps (the message says where).</exception>
    public static ITimestepPolicy FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        return Parse(json, "policy JSON");
    }

    /// <summary>Writes <paramref name="policy"/> to <paramref name="path"/> atomically: a temporary file beside it, then a rename,
    /// so a reader never sees half a file and an interrupted save leaves the previous one.</summary>
    /// <exception cref="NotSupportedException">The policy is not of a supported kind (nothing is written).</exception>
    public static void Save(ITimestepPolicy policy, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string text = ToJson(policy);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            File.WriteAllText(temp, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Reads the policy in <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="PolicyFormatException">The file is not a valid policy (the message names the file and what is wrong).</exception>
    public static ITimestepPolicy Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"policy file '{path}' does not exist.", path);
        return Parse(File.ReadAllText(path), $"policy file '{path}'");
    }

    private static ITimestepPolicy Parse(string json, string where)
    {
        try
        {
            JsonNode? node;
            try { node = JsonNode.Parse(json, documentOptions: ReadOptions); }
            catch (JsonException e) { throw Bad($"not valid JSON ({e.Message})", e); }
            var root = node as JsonObject ?? throw Bad("the top level is not a JSON object");
            if (Str(root, "format", "") != Format) throw Bad($"'format' is not \"{Format}\"");
            int version = Int(root, "version", "");
            if (version != Version) throw Bad($"format version {version} is not supported (this library reads version {Version})");
            string kind = Str(root, "kind", "");
            var configs = Arr(root, "configs", "").Select((c, i) => Config(c as JsonObject ?? throw Bad($"configs[{i}] is not an object"), $"configs[{i}]")).ToList();
            string? name = root["name"] is null ? null : Str(root, "name", "");
            LayerQuantConfig Ref(JsonNode? value, string at)
            {
                if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<int>(out int i)) throw Bad($"{at} is missing or not a config index");
                return i >= 0 && i < configs.Count ? configs[i] : throw Bad($"{at} = {i} is not an index of the {configs.Count} configs");
            }
            StaticTimestepPolicy Static(JsonObject o, string at)
            {
                var overrides = o["overrides"] switch
                {
                    null => new Dictionary<string, LayerQuantConfig>(),
                    JsonObject map => map.ToDictionary(kv => kv.Key, kv => Ref(kv.Value, $"{at}overrides['{kv.Key}']")),
                    _ => throw Bad($"{at}overrides is not an object (layer name → config index)"),
                };
                return new StaticTimestepPolicy(Ref(o["default"], $"{at}default"), overrides);
            }
            switch (kind)
            {
                case "static":
                    return Static(root, "");
                case "time-grouped":
                    var groups = Arr(root, "groups", "").Select((g, i) =>
                    {
                        string at = $"groups[{i}].";
                        var o = g as JsonObject ?? throw Bad($"groups[{i}] is not an object");
                        return new TimestepGroup(Int(o, "first", at), Int(o, "last", at), Static(o, at));
                    }).ToList();
                    try { return new TimeGroupedTimestepPolicy(groups, name); }
                    catch (ArgumentException e) { throw Bad($"groups: {Plain(e)}", e); }
                case "dynamic":
                    var layers = Arr(root, "layers", "").Select((l, i) => l is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad($"layers[{i}] is not a string")).ToList();
                    var rows = Arr(root, "table", "").Select((r, k) =>
                    {
                        var row = r as JsonArray ?? throw Bad($"table[{k}] is not an array");
                        if (row.Count != layers.Count) throw Bad($"table[{k}] (step {k}) has {row.Count} entries for {layers.Count} layers");
                        return (IReadOnlyList<LayerQuantConfig>)row.Select((c, l) => Ref(c, $"table[{k}][{l}] (step {k}, layer '{layers[l]}')")).ToList();
                    }).ToList();
                    var other = Ref(root["other"], "other");
                    try { return new DynamicTimestepPolicy(layers, rows, other, name); }
                    catch (ArgumentException e) { throw Bad(Plain(e), e); }
                default:
                    throw Bad($"kind '{kind}' is not one of static, time-grouped, dynamic");
            }
        }
        catch (PolicyFormatException e)
        {
            throw new PolicyFormatException($"{where}: {e.Message}", e.InnerException ?? e);
        }
    }

    /// <summary>The message of a constructor's argument error, without the parameter name and the final period.</summary>
    private static string Plain(ArgumentException e) =>
        (e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal)).TrimEnd('.');

    private static PolicyFormatException Bad(string message, Exception? inner = null) =>
        inner is null ? new(message + ".") : new(message + ".", inner);

    private static string Str(JsonObject o, string field, string at) =>
        o[field] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Bad($"{at}{field} is missing or not a string");

    private static int Int(JsonObject o, string field, string at) =>
        o[field] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i) ? i : throw Bad($"{at}{field} is missing or not an integer");

    private static bool Bool(JsonObject o, string field, string at) =>
        o[field] is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Bad($"{at}{field} is missing or not true/false");

    private static double Number(JsonObject o, string field, string at) =>
        o[field] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<double>(out var d) ? d : throw Bad($"{at}{field} is missing or not a number");

    private static JsonArray Arr(JsonObject o, string field, string at) => o[field] as JsonArray ?? throw Bad($"{at}{field} is missing or not an array");

    private static JsonObject Spec(QuantSpec s) => new()
    {
        ["bits"] = s.Bits, ["symmetric"] = s.Symmetric, ["granularity"] = s.Granularity.ToString(), ["group_size"] = s.GroupSize,
        ["dynamic"] = s.Dynamic, ["clip_ratio"] = s.ClipRatio,
    };

    private static LayerQuantConfig Config(JsonObject o, string at)
    {
        QuantSpec Read(string field, QuantTarget target)
        {
            string here = $"{at}.{field}.";
            var s = o[field] as JsonObject ?? throw Bad($"{at}.{field} is missing or not an object");
            int bits = Int(s, "bits", here);
            string g = Str(s, "granularity", here);
            if (!Enum.TryParse<QuantGranularity>(g, out var granularity) || !Enum.IsDefined(granularity) || int.TryParse(g, out _))
                throw Bad($"{here}granularity '{g}' is not one of {string.Join(", ", Enum.GetNames<QuantGranularity>())}");
            var spec = new QuantSpec
            {
                Bits = bits, Symmetric = Bool(s, "symmetric", here), Granularity = granularity, GroupSize = Int(s, "group_size", here),
                Dynamic = Bool(s, "dynamic", here), ClipRatio = Number(s, "clip_ratio", here),
            };
            var problems = spec.FindProblems(target);
            if (problems.Count > 0) throw Bad($"{at}.{field}: {string.Join(" ", problems).TrimEnd('.')}");
            return spec.IsEnabled ? spec : QuantSpec.FullPrecision;
        }
        return new LayerQuantConfig(Read("weight", QuantTarget.Weight), Read("activation", QuantTarget.Activation));
    }

    /// <summary>Indented JSON, except that arrays of numbers inside an array (the rows of a dynamic policy) take one line each.</summary>
    private static string Indented(JsonNode root)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, NewLine = "\n" }))
            Write(writer, root);
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    private static void Write(Utf8JsonWriter writer, JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                writer.WriteStartObject();
                foreach (var (key, value) in o)
                {
                    writer.WritePropertyName(key);
                    Write(writer, value);
                }
                writer.WriteEndObject();
                break;
            case JsonArray a:
                writer.WriteStartArray();
                foreach (var x in a)
                {
                    // Utf8JsonWriter does not indent raw values: the row brings its own line break and indentation.
                    if (x is JsonArray row && row.All(v => v is JsonValue n && n.GetValueKind() == JsonValueKind.Number))
                        writer.WriteRawValue("\n" + new string(' ', 2 * writer.CurrentDepth) + row.ToJsonString(), skipInputValidation: true);
                    else
                        Write(writer, x);
                }
                writer.WriteEndArray();
                break;
            case null:
                writer.WriteNullValue();
                break;
            default:
                node.WriteTo(writer);
                break;
        }
    }
}
