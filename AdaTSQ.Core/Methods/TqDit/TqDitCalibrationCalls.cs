using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>One recorded model call: its inputs, the sampling step it ran at, and the full-precision output.</summary>
/// <param name="X">The noisy input.</param>
/// <param name="T">The timesteps.</param>
/// <param name="Y">The labels.</param>
/// <param name="Step">The step the sampler had set.</param>
/// <param name="Reference">The full-precision model's output for these inputs.</param>
public sealed record TqDitCall(Tensor X, Tensor T, Tensor Y, TimestepInfo Step, Tensor Reference);

/// <summary>
/// TQ-DiT's calibration data: the full-precision model's calls along its own sampling trajectories, recorded once (inputs,
/// step and output). TQ-DiT replays them with gradients (the calibration sources of the library run under no-grad), to get
/// <c>g = ∂L/∂O</c> at every quantized layer's output for its Hessian-guided search; as an <see cref="ICalibrationSource"/>
/// (one item per call) they are also the pipeline's calibration data. Record them before quantizing: the reference outputs
/// must be those of the full-precision model. Owns its tensors.
/// </summary>
public sealed class TqDitCalibrationCalls : ICalibrationSource, IDisposable
{
    private readonly List<TqDitCall> _calls;

    private TqDitCalibrationCalls(Denoiser model, nn.Module? module, List<TqDitCall> calls)
    {
        Model = model;
        Module = module;
        _calls = calls;
    }

    /// <summary>The model the calls are replayed through (the one being quantized).</summary>
    public Denoiser Model { get; }

    /// <summary>The module behind <see cref="Model"/>, whose parameters are kept out of the replay's autograd; null when not given.</summary>
    public nn.Module? Module { get; }

    /// <summary>The recorded calls, in the order they ran.</summary>
    public IReadOnlyList<TqDitCall> Calls => _calls;

    /// <inheritdoc />
    public int Count => _calls.Count;

    /// <summary>
    /// Runs every trajectory of the source <paramref name="runTrajectories"/> builds (on a recording wrapper of <paramref name="model"/>, in full precision) and records each
    /// call of <paramref name="model"/> with the step the sampler set.
    /// </summary>
    /// <param name="model">The model as the sampler calls it, and as the calls are replayed.</param>
    /// <param name="runTrajectories">Builds the trajectory source on the recording wrapper of <paramref name="model"/>.</param>
    /// <param name="module">The module behind <paramref name="model"/> (its parameters get no gradient during the replay), or null.</param>
    /// <param name="cancellationToken">Checked between trajectory batches.</param>
    public static TqDitCalibrationCalls Record(Denoiser model, Func<Denoiser, ICalibrationSource> runTrajectories, nn.Module? module = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(runTrajectories);
        var calls = new List<TqDitCall>();
        Denoiser recording = (x, t, y) =>
        {
            var step = TimestepContext.Current ?? throw new CalibrationException("TQ-DiT records calls per sampling step, but the sampler set no TimestepContext.");
            var output = model(x, t, y);
            calls.Add(new TqDitCall(x.detach().clone().DetachFromDisposeScope(), t.detach().clone().DetachFromDisposeScope(),
                y.detach().clone().DetachFromDisposeScope(), step, output.detach().clone().DetachFromDisposeScope()));
            return output;
        };
        var result = new TqDitCalibrationCalls(model, module, calls);
        try
        {
            var source = runTrajectories(recording);
            for (int i = 0; i < source.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                source.Run(i, cancellationToken);
            }
            if (calls.Count == 0) throw new CalibrationException("TQ-DiT recorded no model call: the trajectory source ran nothing.");
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>The calls of a class-conditional <see cref="DiT"/> along DDIM (or DDPM) trajectories, as <see cref="TrajectoryCalibrationSource.ForDiT"/> runs them.</summary>
    public static TqDitCalibrationCalls ForDiT(DiT model, DiffusionSampler sampler, bool ddim = true, TrajectoryCalibrationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sampler);
        var c = model.Config;
        var device = model.parameters().First().device;
        TrajectorySampler run = ddim ? sampler.SampleDdim : sampler.SampleDdpm;
        return Record((x, t, y) => model.call(x, t, y),
            recording => new TrajectoryCalibrationSource(recording, run, [c.InChannels, c.InputSize, c.InputSize], c.NumClasses, device, options), model, cancellationToken);
    }

    /// <summary>
    /// Runs every item of <paramref name="source"/> (whose model calls go through <paramref name="model"/>'s <c>call</c>, in full
    /// precision) and records each call of <paramref name="model"/> with the step the sampler set; replays go through
    /// <paramref name="model"/> too. Any source that drives the model works (e.g. <see cref="TrajectoryCalibrationSource.ForDiT"/>).
    /// </summary>
    public static TqDitCalibrationCalls Record(nn.Module<Tensor, Tensor, Tensor, Tensor> model, ICalibrationSource source, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(source);
        var calls = new List<TqDitCall>();
        var result = new TqDitCalibrationCalls((x, t, y) => model.call(x, t, y), model, calls);
        var hook = model.register_forward_hook((module, x, t, y, output) =>
        {
            var step = TimestepContext.Current ?? throw new CalibrationException("TQ-DiT records calls per sampling step, but the source set no TimestepContext.");
            calls.Add(new TqDitCall(x.detach().clone().DetachFromDisposeScope(), t.detach().clone().DetachFromDisposeScope(),
                y.detach().clone().DetachFromDisposeScope(), step, output.detach().clone().DetachFromDisposeScope()));
            return output;
        });
        try
        {
            for (int i = 0; i < source.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                source.Run(i, cancellationToken);
            }
            if (calls.Count == 0) throw new CalibrationException("TQ-DiT recorded no model call: the source did not call the model.");
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
        finally
        {
            hook.remove();
        }
    }

    /// <summary>Replays call <paramref name="index"/> under no-grad at its step (the pipeline's capture).</summary>
    public void Run(int index, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var call = _calls[index];
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var step = TimestepContext.Enter(call.Step);
        Model(call.X, call.T, call.Y);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var c in _calls)
        {
            c.X.Dispose();
            c.T.Dispose();
            c.Y.Dispose();
            c.Reference.Dispose();
        }
        _calls.Clear();
    }
}
