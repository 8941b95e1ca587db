using AdaTSQ.Abstractions;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Calibration;

/// <summary>
/// Runs a full sampler on <paramref name="noise"/> with <paramref name="labels"/> and returns the
/// final sample; the sampler sets <see cref="TimestepContext"/> at each step (e.g.
/// <see cref="DiffusionSampler.SampleDdim"/>).
/// </summary>
public delegate Tensor TrajectorySampler(Denoiser model, Tensor noise, Tensor labels, SamplingOptions options, CancellationToken cancellationToken);

/// <summary>Options of <see cref="TrajectoryCalibrationSource"/>.</summary>
public sealed record TrajectoryCalibrationOptions
{
    /// <summary>Number of calibration trajectories (samples). Default 32.</summary>
    public int Samples { get; init; } = 32;

    /// <summary>Trajectories run together in one item. Default 16.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Seed of the initial noise: trajectory batch <c>i</c> draws its noise from a generator seeded <c>Seed + i</c>. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The class label of each trajectory; null = round robin over the model's classes (0, 1, …).</summary>
    public IReadOnlyList<long>? Labels { get; init; }

    /// <summary>How the sampler runs (CFG, clipping, its own noise seed). Its <c>OnStep</c>/<c>Progress</c> are ignored.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Samples <= 0) p.Add($"calibration samples {Samples} must be positive.");
        if (BatchSize <= 0) p.Add($"calibration batch size {BatchSize} must be positive.");
        if (Labels is not null && Labels.Count != Samples) p.Add($"{Labels.Count} calibration labels were given for {Samples} samples.");
        return p;
    }
}

/// <summary>
/// Calibration data of a diffusion model: the full-precision sampler's own denoising trajectories.
/// Item <c>i</c> runs one batch of trajectories from seeded noise through every sampling step, so
/// every quantizable layer is observed at every step with the inputs it sees in real use (the
/// sampler sets <see cref="TimestepContext"/> before each model call, so statistics are kept per
/// step). Nothing of the trajectory is stored: observers accumulate what they need on the fly.
/// Text-conditioned models are the same idea with prompt embeddings in place of labels.
/// </summary>
public sealed class TrajectoryCalibrationSource : ICalibrationSource
{
    private readonly Denoiser _model;
    private readonly TrajectorySampler _sampler;
    private readonly long[] _sampleShape;
    private readonly Device _device;
    private readonly long[] _labels;

    /// <summary>Creates the source.</summary>
    /// <param name="model">The model as the sampler calls it.</param>
    /// <param name="sampler">Runs one whole trajectory batch.</param>
    /// <param name="sampleShape">Shape of one sample without the batch dimension, e.g. <c>[C, H, W]</c>.</param>
    /// <param name="numClasses">Classes for the default round-robin labels.</param>
    /// <param name="device">Where the noise is made.</param>
    /// <param name="options">Sizes, seed, labels and sampling options.</param>
    public TrajectoryCalibrationSource(Denoiser model, TrajectorySampler sampler, long[] sampleShape, int numClasses, Device device, TrajectoryCalibrationOptions? options = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _sampler = sampler ?? throw new ArgumentNullException(nameof(sampler));
        ArgumentNullException.ThrowIfNull(sampleShape);
        Options = options ?? new TrajectoryCalibrationOptions();
        var problems = Options.FindProblems().ToList();
        if (sampleShape.Length == 0 || sampleShape.Any(d => d <= 0)) problems.Add($"sample shape [{string.Join(", ", sampleShape)}] must be non-empty and positive.");
        if (numClasses <= 0 && Options.Labels is null) problems.Add($"{numClasses} classes: give a positive class count or explicit labels.");
        if (problems.Count > 0) throw new CalibrationException("invalid trajectory calibration: " + string.Join(" ", problems));
        _sampleShape = sampleShape;
        _device = device;
        _labels = Options.Labels?.ToArray() ?? Enumerable.Range(0, Options.Samples).Select(i => (long)(i % numClasses)).ToArray();
    }

    /// <summary>
    /// The trajectories of a class-conditional <see cref="DiT"/> under DDIM (<paramref name="ddim"/>) or
    /// DDPM sampling with <paramref name="sampler"/>'s schedule.
    /// </summary>
    public static TrajectoryCalibrationSource ForDiT(DiT model, DiffusionSampler sampler, bool ddim = true, TrajectoryCalibrationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sampler);
        var c = model.Config;
        var device = model.parameters().First().device;
        TrajectorySampler run = ddim ? sampler.SampleDdim : sampler.SampleDdpm;
        return new TrajectoryCalibrationSource((x, t, y) => model.call(x, t, y), run, [c.InChannels, c.InputSize, c.InputSize], c.NumClasses, device, options);
    }

    /// <summary>The options in use.</summary>
    public TrajectoryCalibrationOptions Options { get; }

    /// <inheritdoc />
    public int Count => (Options.Samples + Options.BatchSize - 1) / Options.BatchSize;

    /// <summary>The labels of batch <paramref name="index"/>.</summary>
    public long[] LabelsOf(int index) => _labels.Skip(index * Options.BatchSize).Take(Options.BatchSize).ToArray();

    /// <summary>The initial noise of batch <paramref name="index"/> (a new tensor; the same on every call).</summary>
    public Tensor NoiseOf(int index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), $"batch {index} of {Count}.");
        long n = Math.Min(Options.BatchSize, Options.Samples - (long)index * Options.BatchSize);
        using var generator = new Generator((ulong)(Options.Seed + index), _device);
        return torch.randn([n, .. _sampleShape], generator: generator, device: _device);
    }

    /// <inheritdoc />
    public void Run(int index, CancellationToken cancellationToken)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var noise = NoiseOf(index);
        var labels = torch.tensor(LabelsOf(index), device: _device);
        var options = Options.Sampling with { OnStep = null, Progress = null, Seed = Options.Sampling.Seed + index };
        _sampler(_model, noise, labels, options, cancellationToken);
    }
}
