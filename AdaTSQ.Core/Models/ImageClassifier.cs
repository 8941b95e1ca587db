using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models;

/// <summary>
/// A small CNN classifier for 28×28 grey images in [−1, 1] (two 3×3 conv + max-pool stages, 32 and 64
/// channels, then 128 hidden units): the judge of class fidelity, trained separately from the
/// generators it judges. Input <c>[N, 1, 28, 28]</c>, output logits <c>[N, classes]</c>.
/// </summary>
public sealed class ImageClassifier : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> features;
    private readonly nn.Module<Tensor, Tensor> head;

    /// <summary>Creates the network with weights drawn after <c>torch.manual_seed(<paramref name="seed"/>)</c>.</summary>
    public ImageClassifier(int classes = 10, long seed = 0, Device? device = null) : base(nameof(ImageClassifier))
    {
        torch.manual_seed(seed);
        features = nn.Sequential(
            ("0", nn.Conv2d(1, 32, 3, padding: 1)), ("1", nn.ReLU()), ("2", nn.MaxPool2d(2)),
            ("3", nn.Conv2d(32, 64, 3, padding: 1)), ("4", nn.ReLU()), ("5", nn.MaxPool2d(2)));
        head = nn.Sequential(("0", nn.Flatten()), ("1", nn.Dropout(0.25)), ("2", nn.Linear(64 * 7 * 7, 128)), ("3", nn.ReLU()), ("4", nn.Linear(128, classes)));
        RegisterComponents();
        if (device is not null) this.to(device);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        if (x.Dimensions != 4 || x.shape[1] != 1 || x.shape[2] != 28 || x.shape[3] != 28)
            throw new ArgumentException($"the classifier takes [N, 1, 28, 28] images, got [{string.Join(", ", x.shape)}].", nameof(x));
        using var scope = torch.NewDisposeScope();
        return head.call(features.call(x)).MoveToOuterDisposeScope();
    }

    /// <summary>Predicted class of each image (eval mode, no grad), in batches of <paramref name="batch"/>.</summary>
    public long[] Predict(Tensor images, int batch = 500)
    {
        bool wasTraining = training;
        eval();
        try
        {
            using var noGrad = torch.no_grad();
            var result = new List<long>();
            for (long s = 0; s < images.shape[0]; s += batch)
            {
                using var scope = torch.NewDisposeScope();
                var logits = call(images[(int)s..(int)Math.Min(s + batch, images.shape[0])]);
                result.AddRange(logits.argmax(1).cpu().data<long>().ToArray());
            }
            return result.ToArray();
        }
        finally
        {
            train(wasTraining);
        }
    }
}
