using System.Diagnostics;
using System.Globalization;
using AdaTSQ.Data;
using AdaTSQ.IO;
using AdaTSQ.Metrics;
using AdaTSQ.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Training;

/// <summary>
/// Trains the Fashion-MNIST judge classifier (<see cref="ImageClassifier"/>) with AdamW, reports its
/// accuracy on the real test set and writes its weights as safetensors (accuracy in the metadata).
/// </summary>
internal static class TrainClassifierCommand
{
    public static int Run(string[] args, Device device, long seed, CancellationToken ct)
    {
        int epochs = Program.Option(args, "--epochs") is { } e ? int.Parse(e, CultureInfo.InvariantCulture) : 3;
        int batch = Program.Option(args, "--batch") is { } b ? int.Parse(b, CultureInfo.InvariantCulture) : 128;
        string output = Program.Option(args, "--output") ?? "models/fashion-classifier.safetensors";
        var train = ImageDataset.FashionMnist(train: true);
        var test = ImageDataset.FashionMnist(train: false);
        using var model = new ImageClassifier(seed: seed, device: device);
        var optimizer = torch.optim.AdamW(model.parameters(), lr: 1e-3, weight_decay: 1e-4);
        var watch = Stopwatch.StartNew();
        int stepsPerEpoch = train.Count / batch;
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            var order = Enumerable.Range(0, train.Count).ToArray();
            new Random(HashCode.Combine(seed, epoch)).Shuffle(order);
            model.train();
            double lossAvg = double.NaN;
            for (int s = 0; s < stepsPerEpoch; s++)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = torch.NewDisposeScope();
                var (x, y) = train.Batch(order[(s * batch)..((s + 1) * batch)], device);
                var loss = nn.functional.cross_entropy(model.call(x), y);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                double l = loss.item<float>();
                lossAvg = double.IsNaN(lossAvg) ? l : 0.98 * lossAvg + 0.02 * l;
                if ((s + 1) % 50 == 0) Console.Error.Write($"\repoch {epoch + 1}/{epochs} step {s + 1}/{stepsPerEpoch} loss {lossAvg:F4}   ");
            }
            Console.Error.WriteLine();
        }
        var (images, labels) = test.Batch(Enumerable.Range(0, test.Count).ToArray(), device);
        var (accuracy, perClass) = ClassFidelity.Accuracy(model, images, labels.cpu().data<long>().ToArray());
        images.Dispose(); labels.Dispose();
        Console.WriteLine($"Test accuracy {accuracy:P2} on {test.Count} real Fashion-MNIST test images after {epochs} epochs ({watch.Elapsed.TotalMinutes:F1} min).");
        Console.WriteLine("Per class: " + string.Join(", ", perClass.Select((a, c) => $"{test.ClassNames[c]} {a:P1}")));
        SafeTensors.SaveModule(model, output, new Dictionary<string, string>
        {
            ["format"] = "AdaTSQ.NET Fashion-MNIST classifier",
            ["test_accuracy"] = accuracy.ToString("F4", CultureInfo.InvariantCulture),
            ["epochs"] = epochs.ToString(CultureInfo.InvariantCulture),
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["wall_seconds"] = watch.Elapsed.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture),
            ["command"] = "./run.sh " + string.Join(" ", args),
        });
        Console.WriteLine($"Wrote {output}.");
        return 0;
    }
}
