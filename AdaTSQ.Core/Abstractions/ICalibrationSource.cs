namespace AdaTSQ.Abstractions;

/// <summary>
/// Drives a model over calibration data: item <c>i</c> runs whatever forward pass(es) that item
/// needs — one batch through a plain model, or a whole denoising trajectory through a diffusion
/// model, with <see cref="TimestepContext"/> set at each step. Calibrators attach observers to the
/// quantizable layers and then run every item.
/// </summary>
public interface ICalibrationSource
{
    /// <summary>Number of items (for progress and for checking that there is any data).</summary>
    int Count { get; }

    /// <summary>Runs item <paramref name="index"/> (0 ≤ index &lt; <see cref="Count"/>) under no-grad; outputs are discarded.</summary>
    void Run(int index, CancellationToken cancellationToken);
}
