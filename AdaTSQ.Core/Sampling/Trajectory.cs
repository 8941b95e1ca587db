namespace AdaTSQ.Sampling;

/// <summary>
/// Records every step of a sampling run (copies of input, output and next sample), for calibration
/// and for measuring a quantized model's deviation from full precision step by step. Owns the copies.
/// </summary>
/// <example><c>using var traj = new Trajectory(); sampler.Sample(model, noise, y, options with { OnStep = traj.Record });</c></example>
public sealed class Trajectory : IDisposable
{
    private readonly List<SamplerStep> _steps = [];

    /// <summary>The recorded steps, in sampling order.</summary>
    public IReadOnlyList<SamplerStep> Steps => _steps;

    /// <summary>Copies and keeps <paramref name="step"/>; pass this method as <see cref="SamplingOptions.OnStep"/>.</summary>
    public void Record(SamplerStep step) =>
        _steps.Add(step with { Input = step.Input.detach().clone().DetachFromDisposeScope(), Output = step.Output.detach().clone().DetachFromDisposeScope(), Next = step.Next.detach().clone().DetachFromDisposeScope() });

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var s in _steps) { s.Input.Dispose(); s.Output.Dispose(); s.Next.Dispose(); }
        _steps.Clear();
    }
}
