using AdaTSQ.Metrics;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Tensor = TorchSharp.torch.Tensor;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// 512-d image features from ResNet-18 (ImageNet-trained, shipped in the NuGet package
/// Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1), run with ONNX Runtime: images in [−1, 1] are
/// mapped to 0–255, replicated to 3 channels, resized bilinearly to 224×224, passed through the
/// package's <c>ResNetPreprocess.onnx</c> and then <c>ResNet18.onnx</c> (global-pool output). The
/// Fréchet distance on these features is reported as "FID (ResNet-18 features)" — not comparable
/// with Inception-v3 FID numbers.
/// </summary>
internal sealed class ResNet18Features : IDisposable
{
    public const int Dimension = 512;
    private readonly InferenceSession _prep;
    private readonly InferenceSession _net;

    public ResNet18Features(string? modelDirectory = null)
    {
        modelDirectory ??= Path.Combine(AppContext.BaseDirectory, "DnnImageModels");
        string prep = Path.Combine(modelDirectory, "ResNetPrepOnnx", "ResNetPreprocess.onnx");
        string net = Path.Combine(modelDirectory, "ResNet18Onnx", "ResNet18.onnx");
        foreach (var f in new[] { prep, net })
            if (!File.Exists(f)) throw new FileNotFoundException($"ResNet-18 model file '{f}' is missing: it comes with the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 (restore the samples project).", f);
        var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, InterOpNumThreads = 1 };
        _prep = new InferenceSession(prep, options);
        _net = new InferenceSession(net, options);
    }

    /// <summary>Features of every image of <paramref name="images"/> <c>[N, C, H, W]</c> in [−1, 1]: an N × 512 array.</summary>
    public double[,] Compute(Tensor images, IProgress<int>? progress = null)
    {
        long n = images.shape[0];
        var features = new double[n, Dimension];
        for (long i = 0; i < n; i++)
        {
            float[] pixels;
            using (var scope = torch.NewDisposeScope())
            {
                var img = images[i].unsqueeze(0).to(ScalarType.Float32).cpu();
                if (img.shape[1] == 1) img = img.expand(1, 3, img.shape[2], img.shape[3]);
                img = nn.functional.interpolate(img, [224, 224], mode: InterpolationMode.Bilinear, align_corners: false);
                img = ((img.clamp(-1, 1) + 1) * 127.5).contiguous();
                pixels = img.data<float>().ToArray();
            }
            var input = new DenseTensor(pixels, [1, 3, 224, 224]);
            using var prepOut = _prep.Run([NamedOnnxValue.CreateFromTensor(_prep.InputMetadata.Keys.First(), input)]);
            var prepared = prepOut.First().AsTensor<float>().ToDenseTensor();
            using var netOut = _net.Run([NamedOnnxValue.CreateFromTensor(_net.InputMetadata.Keys.First(), prepared)]);
            var f = netOut.First().AsEnumerable<float>().ToArray();
            if (f.Length != Dimension) throw new InvalidDataException($"ResNet-18 returned {f.Length} values, expected {Dimension}.");
            for (int j = 0; j < Dimension; j++) features[i, j] = f[j];
            progress?.Report((int)i + 1);
        }
        return features;
    }

    /// <summary>Features of every image as float32 rows, row-major N × 512 (what <see cref="AdaTSQ.Evaluation.ImageScorers.Features"/> takes).</summary>
    public float[] ComputeRows(Tensor images)
    {
        var features = Compute(images);
        var rows = new float[features.Length];
        int k = 0;
        foreach (var v in features) rows[k++] = (float)v;
        return rows;
    }

    /// <summary>Feature statistics of <paramref name="images"/>.</summary>
    public FeatureStatistics Statistics(Tensor images, string source, IProgress<int>? progress = null) =>
        FeatureStatistics.FromFeatures(Compute(images, progress), source);

    public void Dispose()
    {
        _prep.Dispose();
        _net.Dispose();
    }
}
