using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Calibration;

/// <summary>
/// Calibration data for a single-input model: each item is one input batch passed to
/// <c>model.call</c>, optionally at a given denoising step (set in <see cref="TimestepContext"/>).
/// The batches stay owned by the caller.
/// </summary>
public sealed class ModuleCalibrationSource : ICalibrationSource
{
    private readonly nn.Module<Tensor, Tensor> _model;
    private readonly IReadOnlyList<Tensor> _inputs;
    private readonly IReadOnlyList<TimestepInfo?>? _steps;

    /// <summary>Creates the source.</summary>
    /// <param name="model">The model to run.</param>
    /// <param name="inputs">One batch per item.</param>
    /// <param name="steps">The step of each item (same length as <paramref name="inputs"/>), or null for none.</param>
    public ModuleCalibrationSource(nn.Module<Tensor, Tensor> model, IReadOnlyList<Tensor> inputs, IReadOnlyList<TimestepInfo?>? steps = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _inputs = inputs ?? throw new ArgumentNullException(nameof(inputs));
        if (steps is not null && steps.Count != inputs.Count)
            throw new ArgumentException($"{steps.Count} steps were given for {inputs.Count} inputs; give one per input or none.", nameof(steps));
        _steps = steps;
    }

    /// <inheritdoc />
    public int Count => _inputs.Count;

    /// <inheritdoc />
    public void Run(int index, CancellationToken cancellationToken)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var step = _steps?[index];
        using var context = step is { } s ? TimestepContext.Enter(s) : null;
        _model.call(_inputs[index]);
    }
}
