using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using AdaTSQ.IO;
using static TorchSharp.torch;

namespace AdaTSQ.Calibration;

/// <summary>
/// The on-disk form of a <see cref="CalibrationResult"/>: a safetensors file whose tensors are each layer's
/// channel extremes, second moment and per-step channel extremes (<c>layers.{i}.channel_abs_max</c>, …, float32 /
/// float64 exactly as collected) and whose header metadata holds the rest as JSON (format name and version,
/// fingerprint, items, and per layer: name, width, what was collected, calls, rows, ranges, the per-step ranges).
/// Doubles are written in round-trip form, so a loaded result equals the saved one bit for bit.
/// Writes are atomic (a temporary file, then a rename).
/// </summary>
public static class CalibrationFile
{
    /// <summary>The <c>format</c> value in the header.</summary>
    public const string Format = "adatsq-calibration";

    /// <summary>The format version this library writes and reads.</summary>
    public const int Version = 1;

    /// <summary>Saves <paramref name="result"/> to <paramref name="path"/> with an optional <paramref name="fingerprint"/>.</summary>
    public static void Save(CalibrationResult result, string path, string? fingerprint = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var tensors = new List<(string, Tensor)>();
        var layers = new JsonArray();
        int i = 0;
        foreach (var s in result.Layers.Values.OrderBy(l => l.LayerName, StringComparer.Ordinal))
        {
            string p = $"layers.{i++}.";
            if (s.ChannelAbsMax is { } a) tensors.Add((p + "channel_abs_max", a));
            if (s.ChannelMin is { } mn) tensors.Add((p + "channel_min", mn));
            if (s.ChannelMax is { } mx) tensors.Add((p + "channel_max", mx));
            if (s.SecondMoment is { } h) tensors.Add((p + "second_moment", h));
            var channelSteps = new JsonArray();
            foreach (var (step, (min, max)) in s.StepChannels.OrderBy(k => k.Key))
            {
                tensors.Add((p + $"step_channels.{step}.min", min));
                tensors.Add((p + $"step_channels.{step}.max", max));
                channelSteps.Add(step);
            }
            var steps = new JsonArray();
            foreach (var (step, r) in s.Steps.OrderBy(k => k.Key))
                steps.Add(new JsonArray(step, D(r.Min), D(r.Max), r.Rows));
            layers.Add(new JsonObject
            {
                ["name"] = s.LayerName, ["in"] = s.InFeatures, ["second_moment"] = s.CollectsSecondMoment, ["step_channels"] = s.CollectsStepChannels,
                ["calls"] = s.Calls, ["rows"] = s.Rows, ["input_min"] = D(s.InputMin), ["input_max"] = D(s.InputMax),
                ["second_moment_weight"] = D(s.SecondMomentWeight), ["steps"] = steps, ["channel_steps"] = channelSteps,
            });
        }
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["version"] = Version.ToString(CultureInfo.InvariantCulture),
            ["fingerprint"] = fingerprint ?? "",
            ["items"] = result.Items.ToString(CultureInfo.InvariantCulture),
            ["elapsed_seconds"] = D(result.Elapsed.TotalSeconds),
            ["layers"] = layers.ToJsonString(),
        };
        SafeTensors.Save(path, tensors, metadata);
    }

    /// <summary>Loads a file written by <see cref="Save"/>: the statistics and the fingerprint stored with them.</summary>
    /// <exception cref="CalibrationException">The file is missing, unreadable, not a calibration file, of another version, or inconsistent.</exception>
    public static (CalibrationResult Result, string Fingerprint) Load(string path, Device? device = null)
    {
        IReadOnlyDictionary<string, string> meta;
        try { meta = SafeTensors.ReadHeader(path).Metadata; }
        catch (CheckpointException e) { throw new CalibrationException($"calibration file '{path}': {e.Message}"); }
        if (meta.GetValueOrDefault("format") != Format)
            throw new CalibrationException($"calibration file '{path}': header format is '{meta.GetValueOrDefault("format") ?? "(none)"}', expected '{Format}'.");
        if (meta.GetValueOrDefault("version") != Version.ToString(CultureInfo.InvariantCulture))
            throw new CalibrationException($"calibration file '{path}': format version {meta.GetValueOrDefault("version") ?? "(none)"}, this library reads version {Version}.");
        Dictionary<string, Tensor> tensors;
        try { tensors = SafeTensors.Load(path, device); }
        catch (CheckpointException e) { throw new CalibrationException($"calibration file '{path}': {e.Message}"); }
        var built = new List<LayerStatistics>();
        try
        {
            var layers = JsonNode.Parse(meta.GetValueOrDefault("layers") ?? "null") as JsonArray
                ?? throw new CalibrationException($"calibration file '{path}': the header has no 'layers' array.");
            for (int i = 0; i < layers.Count; i++)
            {
                var l = layers[i] as JsonObject ?? throw new CalibrationException($"calibration file '{path}': layers[{i}] is not an object.");
                string p = $"layers.{i}.";
                string name = Field<string>(l, "name", path, i);
                long inFeatures = Field<long>(l, "in", path, i);
                Tensor? Take(string key, long? width)
                {
                    if (!tensors.Remove(p + key, out var t)) return null;
                    long[] expected = width is { } w ? [w] : [inFeatures, inFeatures];
                    if (!t.shape.SequenceEqual(expected))
                    {
                        var message = $"calibration file '{path}': tensor '{p + key}' of layer '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", expected)}].";
                        t.Dispose();
                        throw new CalibrationException(message);
                    }
                    return t;
                }
                var absMax = Take("channel_abs_max", inFeatures);
                var cmin = Take("channel_min", inFeatures);
                var cmax = Take("channel_max", inFeatures);
                var h = Take("second_moment", null);
                var steps = (l["steps"] as JsonArray ?? []).Select(e => e!.AsArray())
                    .Select(e => KeyValuePair.Create(e[0]!.GetValue<int>(), new StepRange(P(e[1]!), P(e[2]!), e[3]!.GetValue<long>()))).ToList();
                var channelSteps = new List<KeyValuePair<int, (Tensor, Tensor)>>();
                foreach (var stepNode in l["channel_steps"] as JsonArray ?? [])
                {
                    int step = stepNode!.GetValue<int>();
                    var min = Take($"step_channels.{step}.min", inFeatures) ?? throw new CalibrationException($"calibration file '{path}': layer '{name}' lacks tensor '{p}step_channels.{step}.min'.");
                    var max = Take($"step_channels.{step}.max", inFeatures) ?? throw new CalibrationException($"calibration file '{path}': layer '{name}' lacks tensor '{p}step_channels.{step}.max'.");
                    channelSteps.Add(KeyValuePair.Create(step, (min, max)));
                }
                built.Add(LayerStatistics.Restore(name, inFeatures, Field<bool>(l, "second_moment", path, i), Field<bool>(l, "step_channels", path, i),
                    Field<int>(l, "calls", path, i), Field<long>(l, "rows", path, i), P(l["input_min"]!), P(l["input_max"]!), P(l["second_moment_weight"]!),
                    absMax, cmin, cmax, h, steps, channelSteps));
            }
            if (tensors.Count > 0)
                throw new CalibrationException($"calibration file '{path}': {tensors.Count} tensor(s) belong to no layer of the header: {string.Join(", ", tensors.Keys.Take(5))}.");
            int items = int.Parse(meta.GetValueOrDefault("items") ?? "0", CultureInfo.InvariantCulture);
            var elapsed = TimeSpan.FromSeconds(double.Parse(meta.GetValueOrDefault("elapsed_seconds") ?? "0", CultureInfo.InvariantCulture));
            return (new CalibrationResult(built, items, elapsed), meta.GetValueOrDefault("fingerprint") ?? "");
        }
        catch (Exception e)
        {
            foreach (var s in built) s.Dispose();
            foreach (var t in tensors.Values) t.Dispose();
            if (e is CalibrationException) throw;
            if (e is JsonException or FormatException or InvalidOperationException or NullReferenceException or ArgumentException or OverflowException)
                throw new CalibrationException($"calibration file '{path}': the header is malformed: {e.Message}");
            throw;
        }
    }

    private static T Field<T>(JsonObject o, string field, string path, int index)
    {
        try { return o[field]!.GetValue<T>(); }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException)
        {
            throw new CalibrationException($"calibration file '{path}': layers[{index}].{field} is missing or not a {typeof(T).Name}.");
        }
    }

    private static string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static double P(JsonNode n) => double.Parse(n.GetValue<string>(), NumberStyles.Float, CultureInfo.InvariantCulture);
}
