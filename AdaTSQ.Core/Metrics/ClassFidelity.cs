using AdaTSQ.Models;
using static TorchSharp.torch;

namespace AdaTSQ.Metrics;

/// <summary>
/// Class fidelity of a class-conditional generator (the analogue of GenEval for this project): the
/// share of generated images that a separately trained classifier assigns to the class they were
/// generated for, overall and per class.
/// </summary>
public static class ClassFidelity
{
    /// <summary>Overall accuracy, and accuracy per requested class (NaN for a class never requested).</summary>
    public static (double Overall, double[] PerClass) Accuracy(ImageClassifier classifier, Tensor images, IReadOnlyList<long> requested, int classes = 10)
    {
        if (images.shape[0] != requested.Count) throw new ArgumentException($"{requested.Count} labels for {images.shape[0]} images.");
        var predicted = classifier.Predict(images);
        var hits = new int[classes];
        var totals = new int[classes];
        for (int i = 0; i < predicted.Length; i++)
        {
            totals[requested[i]]++;
            if (predicted[i] == requested[i]) hits[requested[i]]++;
        }
        return (predicted.Length == 0 ? double.NaN : (double)hits.Sum() / predicted.Length,
            Enumerable.Range(0, classes).Select(c => totals[c] == 0 ? double.NaN : (double)hits[c] / totals[c]).ToArray());
    }
}
