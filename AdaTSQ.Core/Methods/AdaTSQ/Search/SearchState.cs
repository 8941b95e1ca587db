using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using AdaTSQ.IO;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// The saved state of a bit-width search after a finished stage: the beam's choices, costs, errors and
/// samples, in one safetensors file (tensors <c>path.{i}</c>, the rest as JSON metadata), written atomically.
/// A fingerprint of the options, layers, candidates and trajectories guards against resuming another search.
/// </summary>
internal sealed record SearchState(int CompletedStages, IReadOnlyList<SearchPath> Paths, long Evaluations, long SampleEvaluations, TimeSpan Elapsed)
{
    private const string Format = "adatsq-bit-width-search-state";
    private const int Version = 1;

    private sealed record PathRecord(int[] Choices, double Additive, long[] Used, double[] Errors);

    private sealed record Header(string Format, int Version, string Fingerprint, int CompletedStages, long Evaluations, long SampleEvaluations, double ElapsedSeconds, PathRecord[] Paths);

    public static string Fingerprint(BitWidthSearchOptions o, IReadOnlyList<string> layers, IReadOnlyList<IReadOnlyList<BitCandidate>> candidates, SearchTrajectories t, int steps)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{o.Axis}:{string.Join(",", o.SearchedBits)}|{o.WeightSpec}|{o.ActivationSpec}|{o.PairActivationBits}|{o.Budget.Kind}:{o.Budget.Value:R}|{o.BeamWidth}|{o.StepsPerStage}|{steps}|");
        sb.AppendJoin(",", layers).Append('|');
        foreach (var stage in candidates) sb.AppendJoin(";", stage.Select(c => string.Join(",", c.Bits))).Append('|');
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            var noise = t.Noise.to(ScalarType.Float64);
            sb.Append(CultureInfo.InvariantCulture, $"{t.Noise.shape.Aggregate("", (a, d) => a + d + "x")}|{noise.sum().item<double>():R}|{noise.abs().sum().item<double>():R}|");
        }
        using (var labels = t.Labels.to(TorchSharp.torch.CPU)) sb.AppendJoin(",", labels.data<long>().ToArray());
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    public static void Save(string path, string fingerprint, int completedStages, IReadOnlyList<SearchPath> paths, long evaluations, long sampleEvaluations, TimeSpan elapsed)
    {
        var header = new Header(Format, Version, fingerprint, completedStages, evaluations, sampleEvaluations, elapsed.TotalSeconds,
            paths.Select(p => new PathRecord(p.Choices.ToArray(), p.Additive, p.Used.Order().ToArray(), p.Errors.ToArray())).ToArray());
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        SafeTensors.Save(path, paths.Select((p, i) => ($"path.{i}", p.X)), new Dictionary<string, string> { ["search"] = JsonSerializer.Serialize(header) });
    }

    /// <summary>The state in <paramref name="path"/>, or null when the file does not exist.</summary>
    public static SearchState? TryLoad(string path, string fingerprint, Device device)
    {
        if (!File.Exists(path)) return null;
        Header? header;
        Dictionary<string, Tensor> tensors;
        try
        {
            var (_, metadata, _) = SafeTensors.ReadHeader(path);
            header = metadata.TryGetValue("search", out var json) ? JsonSerializer.Deserialize<Header>(json) : null;
            if (header is null || header.Format != Format)
                throw new SearchStateException($"'{path}' is not a bit-width search state (no '{Format}' metadata).");
            if (header.Version != Version)
                throw new SearchStateException($"'{path}' is a search state of format version {header.Version}; this library reads version {Version}.");
            tensors = SafeTensors.Load(path, device);
        }
        catch (Exception e) when (e is IOException or JsonException or CheckpointException or FormatException)
        {
            throw new SearchStateException($"cannot read the search state '{path}': {e.Message}", e);
        }
        if (header.Fingerprint != fingerprint)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new SearchStateException($"'{path}' was saved by a different search (other options, layers, candidates or trajectories): delete it to start over, or choose another StatePath.");
        }
        var paths = new List<SearchPath>();
        for (int i = 0; i < header.Paths.Length; i++)
        {
            if (!tensors.Remove($"path.{i}", out var x))
                throw new SearchStateException($"the search state '{path}' lacks the samples of path {i} (tensor 'path.{i}').");
            var r = header.Paths[i];
            paths.Add(new SearchPath(r.Choices, r.Additive, r.Used.ToHashSet(), x, r.Errors));
        }
        foreach (var t in tensors.Values) t.Dispose();
        return new SearchState(header.CompletedStages, paths, header.Evaluations, header.SampleEvaluations, TimeSpan.FromSeconds(header.ElapsedSeconds));
    }
}
