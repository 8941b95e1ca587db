using AdaTSQ.IO;
using AdaTSQ.Metrics;
using AdaTSQ.Models;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using AdaTSQ.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Models;

/// <summary>The models shipped in models/: the Fashion-MNIST DiT and the classifier that judges it.</summary>
public class ShippedModelTests
{
    private static string ModelFile(string name) => Path.Combine(Data.IdxFileTests.RepositoryRoot(), "models", name);

    [Test]
    public void TheClassifierRecognisesRealTestImages()
    {
        using var classifier = new ImageClassifier();
        SafeTensors.LoadInto(classifier, ModelFile("fashion-classifier.safetensors"));
        var test = ImageDataset.FashionMnist(train: false);
        var (images, labels) = test.Batch(Enumerable.Range(0, 1000).ToArray());
        var (accuracy, _) = ClassFidelity.Accuracy(classifier, images, labels.data<long>().ToArray());
        images.Dispose(); labels.Dispose();
        Assert.That(accuracy, Is.GreaterThan(0.85));
    }
}
