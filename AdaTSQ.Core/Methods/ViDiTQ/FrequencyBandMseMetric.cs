using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// Mean squared error of one spatial frequency band of the samples against the reference: the low band is the image
/// averaged over <see cref="PoolSize"/>×<see cref="PoolSize"/> patches (global layout, shapes, brightness — "structure"),
/// the high band what the average leaves out (edges, texture — "detail"). The two bands split the pixel error of a
/// sample into two aspects that need no extra model.
/// </summary>
public sealed class FrequencyBandMseMetric : ISensitivityMetric
{
    /// <summary>Creates the metric of the low (<paramref name="highBand"/> false) or high band, with <paramref name="poolSize"/> ≥ 2.</summary>
    public FrequencyBandMseMetric(bool highBand, int poolSize = 4)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(poolSize, 2);
        HighBand = highBand;
        PoolSize = poolSize;
    }

    /// <summary>The low band with 4×4 patches (<c>structure-mse</c>).</summary>
    public static FrequencyBandMseMetric Structure { get; } = new(highBand: false);

    /// <summary>The high band with 4×4 patches (<c>detail-mse</c>).</summary>
    public static FrequencyBandMseMetric Detail { get; } = new(highBand: true);

    /// <summary>True for the high band, false for the low band.</summary>
    public bool HighBand { get; }

    /// <summary>The side of the averaging patch.</summary>
    public int PoolSize { get; }

    /// <inheritdoc />
    public string Name => HighBand ? (PoolSize == 4 ? "detail-mse" : $"detail-mse-p{PoolSize}") : (PoolSize == 4 ? "structure-mse" : $"structure-mse-p{PoolSize}");

    /// <inheritdoc />
    /// <exception cref="ArgumentException">The shapes differ or are not <c>[B, C, H, W]</c> with H, W ≥ the pool size.</exception>
    public double Score(Tensor samples, Tensor reference)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(reference);
        if (samples.Dimensions != 4 || !samples.shape.SequenceEqual(reference.shape) || samples.shape[2] < PoolSize || samples.shape[3] < PoolSize)
            throw new ArgumentException($"{Name}: samples [{string.Join(", ", samples.shape)}] and reference [{string.Join(", ", reference.shape)}] must both be [B, C, H, W] with H, W ≥ {PoolSize}.", nameof(samples));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var diff = (samples - reference).to(ScalarType.Float64);
        var low = nn.functional.interpolate(nn.functional.avg_pool2d(diff, PoolSize, ceil_mode: true, count_include_pad: false),
            size: [samples.shape[2], samples.shape[3]], mode: InterpolationMode.Nearest);
        var band = HighBand ? diff - low : low;
        return band.square().mean().item<double>();
    }
}
