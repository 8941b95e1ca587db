using AdaTSQ.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// The semantic aspect: mean Kullback–Leibler divergence <c>KL(p_ref ‖ p)</c> between a classifier's class probabilities
/// on the reference samples and on the samples (<c>class-kl</c>). It stays near 0 while a layer's quantization changes
/// pixels but not what the image shows, the image analogue of the paper's text–image alignment metric.
/// </summary>
public sealed class ClassProbabilityMetric : ISensitivityMetric
{
    private readonly ImageClassifier _classifier;

    /// <summary>Creates the metric with a trained <paramref name="classifier"/> (not owned; it must be in eval mode and on the samples' device).</summary>
    public ClassProbabilityMetric(ImageClassifier classifier)
    {
        _classifier = classifier ?? throw new ArgumentNullException(nameof(classifier));
    }

    /// <inheritdoc />
    public string Name => "class-kl";

    /// <inheritdoc />
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public double Score(Tensor samples, Tensor reference)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(reference);
        if (!samples.shape.SequenceEqual(reference.shape))
            throw new ArgumentException($"class-kl: samples [{string.Join(", ", samples.shape)}] and reference [{string.Join(", ", reference.shape)}] differ in shape.", nameof(samples));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var logP = _classifier.call(samples).to(ScalarType.Float64).log_softmax(-1);
        var logRef = _classifier.call(reference).to(ScalarType.Float64).log_softmax(-1);
        return Math.Max(0, (logRef.exp() * (logRef - logP)).sum(-1).mean().item<double>());
    }
}
