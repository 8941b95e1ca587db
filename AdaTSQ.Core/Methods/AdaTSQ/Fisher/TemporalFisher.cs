using System.Globalization;
using System.Text.Json;
using AdaTSQ.IO;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;

namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// Temporal Fisher information of a diffusion model: for every sampling step <c>t</c> and every
/// quantizable layer <c>l</c>, <c>F_{t,l} = E[ ‖∇_{W_l} ℓ_t‖² ]</c>, the trace of the empirical
/// (diagonal) Fisher of the layer's weight under the denoising loss at that step (see
/// <see cref="TemporalFisherEstimator"/> for the exact loss). Large values mean that the loss is
/// sharply curved in that layer's weights at that step: its quantization error costs more there.
/// </summary>
public sealed class TemporalFisher
{
    private readonly double[,] _values;
    private readonly Dictionary<string, int> _layerIndex;

    /// <summary>Creates the result from values indexed <c>[step, layer]</c> (copied).</summary>
    public TemporalFisher(IReadOnlyList<TimestepInfo> steps, IReadOnlyList<string> layers, double[,] values, int samplesPerStep)
    {
        ArgumentNullException.ThrowIfNull(steps);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(values);
        if (values.GetLength(0) != steps.Count || values.GetLength(1) != layers.Count)
            throw new ArgumentException($"Fisher values are [{values.GetLength(0)}, {values.GetLength(1)}], expected [{steps.Count} steps, {layers.Count} layers].", nameof(values));
        for (int i = 0; i < steps.Count; i++)
            if (steps[i].StepIndex != i) throw new ArgumentException($"step {i} has index {steps[i].StepIndex}: give the steps in order.", nameof(steps));
        Steps = steps.ToArray();
        Layers = layers.ToArray();
        _values = (double[,])values.Clone();
        _layerIndex = Layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
        SamplesPerStep = samplesPerStep;
    }

    /// <summary>The sampling steps, index 0 = first (noisiest).</summary>
    public IReadOnlyList<TimestepInfo> Steps { get; }

    /// <summary>The layers, by dotted name.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Calibration samples averaged per step.</summary>
    public int SamplesPerStep { get; }

    /// <summary>F at step <paramref name="step"/> for layer <paramref name="layer"/>.</summary>
    public double this[int step, string layer] => _values[step, LayerIndex(layer)];

    /// <summary>Σ_l F_{t,l}: the whole model's Fisher per step.</summary>
    public double[] StepTotals() =>
        Enumerable.Range(0, Steps.Count).Select(t => Enumerable.Range(0, Layers.Count).Sum(l => _values[t, l])).ToArray();

    /// <summary>F_{t,l} over steps for one layer.</summary>
    public double[] LayerValues(string layer)
    {
        int l = LayerIndex(layer);
        return Enumerable.Range(0, Steps.Count).Select(t => _values[t, l]).ToArray();
    }

    /// <summary>The step weights α of every layer under <paramref name="weighting"/> (shared ones when it is not per layer).</summary>
    public IReadOnlyDictionary<string, double[]> Weights(FisherWeighting weighting)
    {
        ArgumentNullException.ThrowIfNull(weighting);
        if (!weighting.PerLayer)
        {
            var shared = weighting.Normalize(StepTotals());
            return Layers.ToDictionary(l => l, _ => shared);
        }
        return Layers.ToDictionary(l => l, l => weighting.Normalize(LayerValues(l)));
    }

    /// <summary>JSON with the steps, layers and values (for reports and plots).</summary>
    public string ToJson() => JsonSerializer.Serialize(new
    {
        samples_per_step = SamplesPerStep,
        steps = Steps.Select(s => new { index = s.StepIndex, timestep = s.Timestep }),
        layers = Layers,
        step_totals = StepTotals(),
        values = Enumerable.Range(0, Steps.Count).Select(t => Enumerable.Range(0, Layers.Count).Select(l => _values[t, l]).ToArray()),
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    /// <exception cref="CalibrationException">The JSON is not a temporal Fisher estimate (names what is missing or inconsistent).</exception>
    public static TemporalFisher FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            JsonElement Get(string name) => root.TryGetProperty(name, out var e) ? e : throw new CalibrationException($"temporal Fisher JSON has no '{name}'.");
            var stepsJson = Get("steps").EnumerateArray().ToList();
            var layers = Get("layers").EnumerateArray().Select(e => e.GetString() ?? throw new CalibrationException("temporal Fisher JSON has a null layer name.")).ToList();
            var rows = Get("values").EnumerateArray().ToList();
            if (rows.Count != stepsJson.Count) throw new CalibrationException($"temporal Fisher JSON has {rows.Count} rows of values for {stepsJson.Count} steps.");
            var values = new double[stepsJson.Count, layers.Count];
            var steps = new List<TimestepInfo>();
            for (int t = 0; t < stepsJson.Count; t++)
            {
                steps.Add(new TimestepInfo(stepsJson[t].GetProperty("index").GetInt32(), stepsJson.Count, stepsJson[t].GetProperty("timestep").GetDouble()));
                var row = rows[t].EnumerateArray().Select(v => v.GetDouble()).ToList();
                if (row.Count != layers.Count) throw new CalibrationException($"temporal Fisher JSON: step {t} has {row.Count} values for {layers.Count} layers.");
                for (int l = 0; l < layers.Count; l++) values[t, l] = row[l];
            }
            return new TemporalFisher(steps, layers, values, Get("samples_per_step").GetInt32());
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException or ArgumentException)
        {
            throw new CalibrationException($"temporal Fisher JSON is malformed: {e.Message}");
        }
    }

    /// <summary>
    /// Saves the estimate as a safetensors file (atomically): the values as a float64 tensor <c>fisher</c>
    /// <c>[steps, layers]</c>, the steps, layers and samples per step in the header (<c>format</c> = adatsq-temporal-fisher,
    /// version 1). <see cref="Load"/> gives back the same values bit for bit, so an estimate made once can be reused by
    /// <c>UseFisherCalibration(TemporalFisher)</c> in later runs.
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var values = torch.tensor(_values.Cast<double>().ToArray(), [Steps.Count, Layers.Count], ScalarType.Float64);
        SafeTensors.Save(path, [("fisher", values)], new Dictionary<string, string>
        {
            ["format"] = FileFormat,
            ["version"] = "1",
            ["samples_per_step"] = SamplesPerStep.ToString(CultureInfo.InvariantCulture),
            ["steps"] = JsonSerializer.Serialize(Steps.Select(s => new[] { s.StepIndex, s.Timestep })),
            ["layers"] = JsonSerializer.Serialize(Layers),
        });
    }

    /// <summary>Loads an estimate written by <see cref="Save"/>.</summary>
    /// <exception cref="CalibrationException">The file is missing, unreadable, not a temporal Fisher file, of another version, or inconsistent.</exception>
    public static TemporalFisher Load(string path)
    {
        try
        {
            var meta = SafeTensors.ReadHeader(path).Metadata;
            if (meta.GetValueOrDefault("format") != FileFormat)
                throw new CalibrationException($"temporal Fisher file '{path}': header format is '{meta.GetValueOrDefault("format") ?? "(none)"}', expected '{FileFormat}'.");
            if (meta.GetValueOrDefault("version") != "1")
                throw new CalibrationException($"temporal Fisher file '{path}': format version {meta.GetValueOrDefault("version") ?? "(none)"}, this library reads version 1.");
            var steps = JsonSerializer.Deserialize<double[][]>(meta.GetValueOrDefault("steps") ?? "null")
                ?? throw new CalibrationException($"temporal Fisher file '{path}': the header has no 'steps'.");
            var layers = JsonSerializer.Deserialize<string[]>(meta.GetValueOrDefault("layers") ?? "null")
                ?? throw new CalibrationException($"temporal Fisher file '{path}': the header has no 'layers'.");
            var tensors = SafeTensors.Load(path);
            try
            {
                if (!tensors.TryGetValue("fisher", out var t) || tensors.Count != 1)
                    throw new CalibrationException($"temporal Fisher file '{path}': expected one tensor 'fisher', found {string.Join(", ", tensors.Keys)}.");
                if (t.dtype != ScalarType.Float64 || !t.shape.SequenceEqual(new long[] { steps.Length, layers.Length }))
                    throw new CalibrationException($"temporal Fisher file '{path}': tensor 'fisher' is {t.dtype} [{string.Join(", ", t.shape)}], expected Float64 [{steps.Length}, {layers.Length}].");
                var flat = t.data<double>().ToArray();
                var values = new double[steps.Length, layers.Length];
                Buffer.BlockCopy(flat, 0, values, 0, flat.Length * sizeof(double));
                var infos = steps.Select((s, i) => s.Length == 2 && s[0] == i
                    ? new TimestepInfo(i, steps.Length, s[1])
                    : throw new CalibrationException($"temporal Fisher file '{path}': step entry {i} is [{string.Join(", ", s)}], expected [{i}, timestep].")).ToList();
                return new TemporalFisher(infos, layers, values, int.Parse(meta.GetValueOrDefault("samples_per_step") ?? "", CultureInfo.InvariantCulture));
            }
            finally
            {
                foreach (var v in tensors.Values) v.Dispose();
            }
        }
        catch (CheckpointException e) { throw new CalibrationException($"temporal Fisher file '{path}': {e.Message}"); }
        catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
        {
            throw new CalibrationException($"temporal Fisher file '{path}' is malformed: {e.Message}");
        }
    }

    /// <summary>The <c>format</c> value of a saved estimate's header.</summary>
    public const string FileFormat = "adatsq-temporal-fisher";

    private int LayerIndex(string layer) => _layerIndex.TryGetValue(layer, out var i)
        ? i
        : throw new CalibrationException($"the temporal Fisher estimate has no layer '{layer}' (it has {Layers.Count} layers: {string.Join(", ", Layers.Take(8))}{(Layers.Count > 8 ? ", …" : "")}).");
}
