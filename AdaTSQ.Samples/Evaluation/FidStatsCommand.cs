using System.Diagnostics;
using AdaTSQ.Data;
using AdaTSQ.Metrics;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// Computes the ResNet-18 feature statistics of the real Fashion-MNIST test set (the FID reference) and writes them
/// as safetensors; by default of all 10,000 test images (--count N for the first N). evaluate states the count it used.
/// </summary>
internal static class FidStatsCommand
{
    public static int Run(string[] args)
    {
        string output = Program.Option(args, "--output") ?? EvaluateCommand.DefaultRealStats;
        var test = ImageDataset.FashionMnist(train: false);
        int count = Program.Option(args, "--count") is { } c ? int.Parse(c, System.Globalization.CultureInfo.InvariantCulture) : test.Count;
        var watch = Stopwatch.StartNew();
        var (images, _) = test.Batch(Enumerable.Range(0, count).ToArray());
        using var features = new ResNet18Features();
        var progress = new ConsoleProgressBar("fid-stats");
        var stats = features.Statistics(images, $"ResNet-18 features of the first {count} Fashion-MNIST test images",
            new Progress<int>(i => { if (i % 100 == 0 || i == count) progress.Report(new Abstractions.QuantizationProgress("features", i, count)); }));
        images.Dispose();
        stats.Save(output);
        Console.WriteLine($"Wrote {output}: {count} images, {stats.Dimension}-d features, {watch.Elapsed.TotalMinutes:F1} min.");
        return 0;
    }
}
