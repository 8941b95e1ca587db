using AdaTSQ.Metrics;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// Scores complete policies on held-out trajectories (<see cref="BitWidthSearch"/>'s selection): runs a policy stage by
/// stage from the held-out noise and measures its final samples against the held-out full-precision ones, computed once.
/// Owns that full-precision result.
/// </summary>
internal sealed class HeldOutRunner : IDisposable
{
    private readonly SearchTrajectories _trajectories;
    private readonly int[] _stageSteps;
    private readonly Tensor _fpFinal;

    private HeldOutRunner(SearchTrajectories trajectories, StageRunner runner, int[] stageSteps, Tensor fpFinal)
    {
        _trajectories = trajectories;
        Runner = runner;
        _stageSteps = stageSteps;
        _fpFinal = fpFinal;
    }

    /// <summary>The runner of the held-out trajectories (its call counts are the held-out selection's cost).</summary>
    public StageRunner Runner { get; }

    /// <summary>Runs the full-precision held-out trajectories (every layer of <paramref name="policy"/> at full precision).</summary>
    public static HeldOutRunner Start(SearchTrajectories heldOut, SearchSpacePolicy policy, BitWidthSearchOptions options, int layers, int[] stageSteps, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var runner = new StageRunner(heldOut, policy, options);
        policy.Assign(Enumerable.Repeat(LayerQuantConfig.FullPrecision, layers).ToList());
        var fp = runner.Run([heldOut.Noise], 0, heldOut.Sampler.StepCount)[0];
        return new HeldOutRunner(heldOut, runner, stageSteps, fp);
    }

    /// <summary>
    /// <paramref name="point"/> with its held-out error: the policy whose stage g runs the weight bits
    /// <paramref name="stageBits"/>[g] per layer.
    /// </summary>
    public FrontierPoint Score(FrontierPoint point, IReadOnlyList<IReadOnlyList<int>> stageBits, CancellationToken cancellationToken)
    {
        if (stageBits.Count != _stageSteps.Length)
            throw new ArgumentException($"{stageBits.Count} stages of bits for {_stageSteps.Length} stages.", nameof(stageBits));
        var x = _trajectories.Noise;
        try
        {
            int first = 0;
            for (int g = 0; g < _stageSteps.Length; g++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Runner.Assign(stageBits[g]);
                var next = Runner.Run([x], first, _stageSteps[g])[0];
                if (!ReferenceEquals(x, _trajectories.Noise)) x.Dispose();
                x = next;
                first += _stageSteps[g];
            }
            return point with { HeldOutMse = ImageMetrics.Mse(x, _fpFinal), HeldOutPsnr = ImageMetrics.Psnr(x, _fpFinal) };
        }
        finally
        {
            if (!ReferenceEquals(x, _trajectories.Noise)) x.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _fpFinal.Dispose();
}
