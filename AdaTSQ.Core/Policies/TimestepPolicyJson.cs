using System.Text.Json;
using System.Text.Json.Nodes;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// Timestep policies as JSON: static, time-grouped and dynamic ones, every <see cref="QuantSpec"/> in full.
/// Configs are stored once in a <c>configs</c> table and referenced by index, so a 50-step × 100-layer
/// dynamic policy stays small.
/// </summary>
/// <remarks>
/// <code>
/// { "format": "adatsq-timestep-policy", "version": 1, "kind": "static" | "time-grouped" | "dynamic", "name": "…",
///   "configs": [ { "weight": SPEC, "activation": SPEC }, … ],
///   static:       "default": 0, "overrides": { "blocks.0.attn.qkv": 1 }
///   time-grouped: "groups": [ { "first": 0, "last": 24, "default": 0, "overrides": { … } }, … ]
///   dynamic:      "layers": [ … ], "other": 0, "table": [ [ config index per layer ], … one row per step ] }
/// SPEC = { "bits": 4, "symmetric": true, "granularity": "PerGroup", "group_size": 64, "dynamic": true, "clip_ratio": 1 }
/// </code>
/// </remarks>
public static class TimestepPolicyJson
{
    private const string Format = "adatsq-timestep-policy";
    private const int Version = 1;

    /// <summary>The JSON of <paramref name="policy"/>.</summary>
    /// <exception cref="NotSupportedException">Not a static, time-grouped or dynamic policy of this library.</exception>
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
        JsonObject Static(StaticTimestepPolicy p) => new()
        {
            ["default"] = Index(p.DefaultConfig),
            ["overrides"] = new JsonObject(p.Overrides.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => KeyValuePair.Create(o.Key, (JsonNode?)Index(o.Value)))),
        };
        var root = new JsonObject { ["format"] = Format, ["version"] = Version, ["name"] = policy.Name };
        switch (policy)
        {
            case StaticTimestepPolicy s:
                root["kind"] = "static";
                foreach (var kv in Static(s).ToList()) root[kv.Key] = kv.Value?.DeepClone();
                break;
            case TimeGroupedTimestepPolicy g:
                root["kind"] = "time-grouped";
                root["groups"] = new JsonArray(g.Groups.Select(x =>
                {
                    var o = Static(x.Policy);
                    o["first"] = x.FirstStep;
                    o["last"] = x.LastStep;
                    return (JsonNode?)o;
                }).ToArray());
                break;
            case DynamicTimestepPolicy d:
                root["kind"] = "dynamic";
                root["layers"] = new JsonArray(d.Layers.Select(l => (JsonNode?)l).ToArray());
                root["other"] = Index(d.OtherLayers);
                root["table"] = new JsonArray(Enumerable.Range(0, d.StepCount)
                    .Select(k => (JsonNode?)new JsonArray(d.Layers.Select(l => (JsonNode?)Index(d[k, l])).ToArray())).ToArray());
                break;
            default:
                throw new NotSupportedException($"policy '{policy.Name}' ({policy.GetType().Name}) cannot be written as JSON: supported are StaticTimestepPolicy, TimeGroupedTimestepPolicy and DynamicTimestepPolicy.");
        }
        root["configs"] = new JsonArray(configs.Select(c => (JsonNode?)new JsonObject { ["weight"] = Spec(c.Weight), ["activation"] = Spec(c.Activation) }).ToArray());
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads a policy written by <see cref="ToJson"/>.</summary>
    /// <exception cref="PolicyFormatException">Malformed JSON, an unknown kind, a bad spec, or rows that do not fit.</exception>
    public static ITimestepPolicy FromJson(string json) => Parse(json, "policy JSON");

    /// <summary>Writes <paramref name="policy"/> to <paramref name="path"/> atomically (a temporary file, then a rename).</summary>
    public static void Save(ITimestepPolicy policy, string path)
    {
        string text = ToJson(policy);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            File.WriteAllText(temp, text);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Reads the policy in <paramref name="path"/>.</summary>
    /// <exception cref="PolicyFormatException">The file is not a valid policy (the message names the file).</exception>
    public static ITimestepPolicy Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"policy file '{path}' does not exist.", path);
        return Parse(File.ReadAllText(path), $"policy file '{path}'");
    }

    private static ITimestepPolicy Parse(string json, string where)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new PolicyFormatException($"{where}: the top level is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new PolicyFormatException($"{where}: not valid JSON ({e.Message}).", e);
        }
        try
        {
            if (Str(root, "format") != Format) throw Bad($"'format' is not \"{Format}\"");
            if (Int(root, "version") != Version) throw Bad($"format version {Int(root, "version")} is not supported (this library reads {Version})");
            var configs = Arr(root, "configs").Select((c, i) => Config(c as JsonObject ?? throw Bad($"configs[{i}] is not an object"), $"configs[{i}]")).ToList();
            string? name = root["name"]?.GetValue<string>();
            LayerQuantConfig Ref(JsonNode? node, string field)
            {
                int i = node is JsonValue v && v.TryGetValue<int>(out var x) ? x : throw Bad($"{field} is not a config index");
                return i >= 0 && i < configs.Count ? configs[i] : throw Bad($"{field} = {i} is not an index of the {configs.Count} configs");
            }
            StaticTimestepPolicy Static(JsonObject o, string at)
            {
                var overrides = (o["overrides"] as JsonObject ?? new JsonObject()).ToDictionary(kv => kv.Key, kv => Ref(kv.Value, $"{at}overrides['{kv.Key}']"));
                return new StaticTimestepPolicy(Ref(o["default"], $"{at}default"), overrides);
            }
            switch (Str(root, "kind"))
            {
                case "static":
                    return Static(root, "");
                case "time-grouped":
                    var groups = Arr(root, "groups").Select((g, i) =>
                    {
                        var o = g as JsonObject ?? throw Bad($"groups[{i}] is not an object");
                        return new TimestepGroup(Int(o, "first"), Int(o, "last"), Static(o, $"groups[{i}]."));
                    }).ToList();
                    try { return new TimeGroupedTimestepPolicy(groups, name); }
                    catch (ArgumentException e) { throw Bad(e.Message); }
                case "dynamic":
                    var layers = Arr(root, "layers").Select((l, i) => l is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad($"layers[{i}] is not a string")).ToList();
                    var rows = Arr(root, "table").Select((r, k) =>
                    {
                        var row = r as JsonArray ?? throw Bad($"table[{k}] is not an array");
                        if (row.Count != layers.Count) throw Bad($"table[{k}] has {row.Count} entries for {layers.Count} layers");
                        return (IReadOnlyList<LayerQuantConfig>)row.Select((c, l) => Ref(c, $"table[{k}][{l}] ({layers[l]})")).ToList();
                    }).ToList();
                    try { return new DynamicTimestepPolicy(layers, rows, Ref(root["other"], "other"), name); }
                    catch (ArgumentException e) { throw Bad(e.Message); }
                default:
                    throw Bad($"kind '{Str(root, "kind")}' is not one of static, time-grouped, dynamic");
            }
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new PolicyFormatException($"{where}: {e.Message}", e);
        }
        catch (PolicyFormatException e) when (!e.Message.StartsWith(where, StringComparison.Ordinal))
        {
            throw new PolicyFormatException($"{where}: {e.Message}", e);
        }
    }

    private static PolicyFormatException Bad(string message) => new(message + ".");

    private static string Str(JsonObject o, string field) =>
        o[field] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad($"'{field}' is missing or not a string");

    private static int Int(JsonObject o, string field) =>
        o[field] is JsonValue v && v.TryGetValue<int>(out var i) ? i : throw Bad($"'{field}' is missing or not an integer");

    private static JsonArray Arr(JsonObject o, string field) => o[field] as JsonArray ?? throw Bad($"'{field}' is missing or not an array");

    private static JsonObject Spec(QuantSpec s) => new()
    {
        ["bits"] = s.Bits, ["symmetric"] = s.Symmetric, ["granularity"] = s.Granularity.ToString(), ["group_size"] = s.GroupSize,
        ["dynamic"] = s.Dynamic, ["clip_ratio"] = s.ClipRatio,
    };

    private static LayerQuantConfig Config(JsonObject o, string at)
    {
        QuantSpec Read(string field, QuantTarget target)
        {
            var s = o[field] as JsonObject ?? throw Bad($"{at}.{field} is missing or not an object");
            string g = Str(s, "granularity");
            if (!Enum.TryParse<QuantGranularity>(g, out var granularity) || !Enum.IsDefined(granularity)) throw Bad($"{at}.{field}.granularity '{g}' is not a QuantGranularity");
            int bits = Int(s, "bits");
            var spec = bits == QuantSpec.FullPrecisionBits ? QuantSpec.FullPrecision : new QuantSpec
            {
                Bits = bits, Symmetric = Bool(s, "symmetric"), Granularity = granularity, GroupSize = Int(s, "group_size"), Dynamic = Bool(s, "dynamic"),
                ClipRatio = s["clip_ratio"] is JsonValue v && v.TryGetValue<double>(out var c) ? c : throw Bad($"{at}.{field}.clip_ratio is missing or not a number"),
            };
            var problems = spec.FindProblems(target);
            if (problems.Count > 0) throw Bad($"{at}.{field}: {string.Join(" ", problems)}");
            return spec;
        }
        return new LayerQuantConfig(Read("weight", QuantTarget.Weight), Read("activation", QuantTarget.Activation));
    }

    private static bool Bool(JsonObject o, string field) =>
        o[field] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : throw Bad($"'{field}' is missing or not a boolean");
}
