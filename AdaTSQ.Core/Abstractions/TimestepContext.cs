namespace AdaTSQ.Abstractions;

/// <summary>
/// The ambient "which denoising step are we in" that samplers set and quantized layers read, so
/// that a timestep-dependent policy can give a layer different bit-widths at different steps
/// without threading the step through every module's <c>forward</c>.
/// </summary>
/// <remarks>
/// The value flows with the logical call (<see cref="AsyncLocal{T}"/>): two samplers running on
/// two threads or tasks see their own steps. Outside any <see cref="Enter(TimestepInfo)"/> scope,
/// <see cref="Current"/> is null and policies fall back to their timestep-independent config.
/// </remarks>
/// <example>
/// <code>
/// for (int i = 0; i &lt; steps; i++)
/// {
///     using var _ = TimestepContext.Enter(new TimestepInfo(i, steps, timesteps[i]));
///     using var eps = model.call(x);   // every QuantLinear inside sees step i
/// }
/// </code>
/// </example>
public static class TimestepContext
{
    private static readonly AsyncLocal<TimestepInfo?> CurrentStep = new();

    /// <summary>The current step, or null when no sampler has set one.</summary>
    public static TimestepInfo? Current => CurrentStep.Value;

    /// <summary>Makes <paramref name="step"/> current until the returned scope is disposed.</summary>
    public static IDisposable Enter(TimestepInfo step)
    {
        if (step.StepCount <= 0)
            throw new ArgumentOutOfRangeException(nameof(step), $"StepCount must be positive, got {step.StepCount}.");
        if (step.StepIndex < 0 || step.StepIndex >= step.StepCount)
            throw new ArgumentOutOfRangeException(nameof(step), $"StepIndex {step.StepIndex} is outside 0..{step.StepCount - 1}.");
        var previous = CurrentStep.Value;
        CurrentStep.Value = step;
        return new Scope(previous);
    }

    private sealed class Scope(TimestepInfo? previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            CurrentStep.Value = previous;
        }
    }
}
