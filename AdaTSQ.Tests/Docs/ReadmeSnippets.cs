using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Docs;

/// <summary>
/// The README's C# snippets, each run on a small model: a <c>TinyTransformer</c> or a tiny DiT with random weights.
/// A snippet is a marked region (<c>// snippet: name</c> … <c>// end snippet</c>) of one of the
/// <c>ReadmeSnippets.*.cs</c> files; <see cref="ReadmeSnippetTests"/> checks that the README shows exactly these
/// regions. Each of those files has its using directives inside its snippet, so the README's snippet compiles as
/// shown; the code around a snippet declares its inputs under the names the README uses and fully qualifies
/// everything else. This file: the small models and data the snippets run on (no snippet here).
/// </summary>
[NonParallelizable] // the snippets write files (policy.json, frontier.json) into the current directory
public partial class ReadmeSnippets
{
    private string _previousDirectory = null!;
    private string _workDirectory = null!;

    [SetUp]
    public void EnterWorkDirectory()
    {
        _previousDirectory = Environment.CurrentDirectory;
        _workDirectory = Directory.CreateTempSubdirectory("adatsq-readme-").FullName;
        Environment.CurrentDirectory = _workDirectory;
    }

    [TearDown]
    public void LeaveWorkDirectory()
    {
        Environment.CurrentDirectory = _previousDirectory;
        Directory.Delete(_workDirectory, recursive: true);
    }

    /// <summary>A DiT of the official architecture, small: 8×8 grey images, patch 2, 1 block of width 32, 4 classes, random weights.</summary>
    internal static DiT TinyDiT() => Models.DiTTests.RandomisedModel(new DiTConfig
    {
        InputSize = 8, PatchSize = 2, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 4, NumClasses = 4, LearnSigma = false,
    });

    /// <summary>Stand-ins for training images in [−1, 1] and their labels (what the temporal Fisher is estimated on).</summary>
    internal static (Tensor X0, Tensor Labels) TrainingImages(DiT dit, int count)
    {
        var c = dit.Config;
        using var generator = new Generator(11);
        var x0 = torch.rand([count, c.InChannels, c.InputSize, c.InputSize], generator: generator) * 2 - 1;
        var labels = torch.tensor(Enumerable.Range(0, count).Select(i => (long)(i % c.NumClasses)).ToArray());
        return (x0, labels);
    }

    /// <summary>What the calibration snippet makes (sampler, options, trajectories, Fisher estimator), with fewer steps and samples.</summary>
    internal static (DiffusionSampler Sampler, SamplingOptions Sampling, TrajectoryCalibrationSource Trajectories, TemporalFisherEstimator Fisher)
        Calibration(DiT dit, Tensor x0, Tensor labels, int steps)
    {
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{steps}"));
        var sampling = new SamplingOptions { CfgScale = 2.0, NullClass = dit.NullClass, ClipDenoised = true };
        var trajectories = TrajectoryCalibrationSource.ForDiT(dit, sampler, ddim: true,
            new TrajectoryCalibrationOptions { Samples = 8, BatchSize = 8, Seed = 1000, Sampling = sampling with { Seed = 2000 } });
        var fisher = new TemporalFisherEstimator((x, t, y) => dit.call(x, t, y), sampler.Diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = 4, Seed = 0 });
        return (sampler, sampling, trajectories, fisher);
    }

    /// <summary>Progress reported on the caller's thread (<see cref="Progress{T}"/> would post it to the thread pool).</summary>
    internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
