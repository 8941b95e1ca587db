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

    [Test]
    public void TheDiTGeneratesImagesTheClassifierRecognises()
    {
        using var model = DiTCheckpoint.Load(ModelFile("fashion-dit.safetensors"));
        using var classifier = new ImageClassifier();
        SafeTensors.LoadInto(classifier, ModelFile("fashion-classifier.safetensors"));
        var requested = Enumerable.Range(0, 20).Select(i => (long)(i % 10)).ToArray();
        using var labels = torch.tensor(requested);
        using var noise = torch.randn([20, 1, 28, 28], generator: new Generator(0));
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim25"));
        using var images = sampler.SampleDdim((x, t, y) => model.call(x, t, y), noise, labels, new SamplingOptions { CfgScale = 2.0, NullClass = model.NullClass, ClipDenoised = true });
        var (accuracy, _) = ClassFidelity.Accuracy(classifier, images, requested);
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.70), $"class accuracy of 20 generated samples: {accuracy:P0}");
        Assert.That(images.abs().max().item<float>(), Is.LessThan(1.5f), "samples stay in the data range");
    }
}
