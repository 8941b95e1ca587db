using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using AdaTSQ.Data;
using AdaTSQ.IO;
using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Training;

/// <summary>
/// Trains the small class-conditional pixel-space DiT (<see cref="DiTConfig.Mnist"/>) on Fashion-MNIST
/// with the ε-prediction loss of DDPM, AdamW and an EMA of the weights; checkpoints and resumes;
/// writes the EMA weights as safetensors.
/// </summary>
/// <remarks>
/// Every random choice of step s (batch indices, timesteps, noise, label dropout) is drawn from
/// generators seeded with (seed, s), so a resumed run continues exactly as an uninterrupted one would.
/// </remarks>
internal static class TrainDiTCommand
{
    public static int Run(string[] args, ILoggerFactory loggers, Device device, long seed, CancellationToken ct)
    {
        var log = loggers.CreateLogger("train-dit");
        int steps = Program.IntOption(args, "--steps", 8000), batch = Program.IntOption(args, "--batch", 64), every = Program.IntOption(args, "--checkpoint-every", 500);
        double lr = Program.DoubleOption(args, "--lr", 3e-4), emaDecay = Program.DoubleOption(args, "--ema", 0.999);
        string workDir = Program.Option(args, "--work") ?? "artifacts/train-fashion-dit";
        string output = Program.Option(args, "--output") ?? "models/fashion-dit.safetensors";
        bool resume = args.Contains("--resume");
        var config = DiTConfig.Mnist;

        var data = ImageDataset.FashionMnist(train: true);
        Console.WriteLine($"Training {Describe(config)} on {data.Name} ({data.Count} images): {steps} steps × batch {batch}, AdamW lr {lr}, EMA {emaDecay}, seed {seed}, {torch.get_num_threads()} threads");

        using var model = new DiT(config, seed, device);
        using var ema = new DiT(config, seed, device);
        CopyInto(ema, model);
        ema.eval();
        var diffusion = GaussianDiffusion.Create(1000);
        var optimizer = torch.optim.AdamW(model.parameters(), lr: lr, weight_decay: 0);

        Directory.CreateDirectory(workDir);
        string checkpoint = Path.Combine(workDir, "checkpoint.safetensors"), optimizerState = Path.Combine(workDir, "optimizer.bin");
        int start = 0;
        double elapsedBefore = 0;
        if (resume && File.Exists(checkpoint))
        {
            SafeTensors.LoadInto(model, checkpoint, strict: false, keyPrefix: "model.");
            SafeTensors.LoadInto(ema, checkpoint, strict: false, keyPrefix: "ema.");
            var meta = SafeTensors.ReadHeader(checkpoint).Metadata;
            start = int.Parse(meta["step"], CultureInfo.InvariantCulture);
            elapsedBefore = double.Parse(meta["elapsed_seconds"], CultureInfo.InvariantCulture);
            if (File.Exists(optimizerState)) optimizer.load_state_dict(optimizerState);
            Console.WriteLine($"Resumed from {checkpoint} at step {start}.");
        }

        var watch = Stopwatch.StartNew();
        double lossAvg = double.NaN;
        model.train();
        for (int step = start; step < steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            var rng = new Random(HashCode.Combine(seed, step));
            var indices = Enumerable.Range(0, batch).Select(_ => rng.Next(data.Count)).ToArray();
            var (x0, y) = data.Batch(indices, device);
            var gen = new Generator((ulong)(seed * 1_000_003 + step), device);
            model.LabelDropoutGenerator = gen;
            var t = torch.randint(0, diffusion.NumTimesteps, [batch], generator: gen, device: device);
            var noise = torch.randn(x0.shape, generator: gen, device: device);
            var xt = diffusion.QSample(x0, t, noise);
            var prediction = model.call(xt, t.to(ScalarType.Float32), y);
            var loss = nn.functional.mse_loss(prediction, noise);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            UpdateEma(ema, model, emaDecay);
            double l = loss.item<float>();
            lossAvg = double.IsNaN(lossAvg) ? l : 0.98 * lossAvg + 0.02 * l;
            gen.Dispose();

            int done = step + 1;
            if (done % 10 == 0 || done == steps)
            {
                double rate = (done - start) / watch.Elapsed.TotalSeconds;
                var eta = TimeSpan.FromSeconds((steps - done) / Math.Max(rate, 1e-9));
                ProgressLine(done, steps, $"loss {lossAvg:F4}  {rate:F2} it/s  ETA {eta:hh\\:mm\\:ss}");
            }
            if (done % every == 0 || done == steps)
            {
                SaveCheckpoint(model, ema, optimizer, checkpoint, optimizerState, done, elapsedBefore + watch.Elapsed.TotalSeconds, seed);
                log.LogInformation("checkpoint at step {Step}, loss {Loss:F4}", done, lossAvg);
            }
        }
        Console.Error.WriteLine();
        double wall = elapsedBefore + watch.Elapsed.TotalSeconds;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "AdaTSQ.NET DiT EMA weights",
            ["config"] = JsonSerializer.Serialize(config),
            ["dataset"] = data.Name,
            ["steps"] = steps.ToString(CultureInfo.InvariantCulture),
            ["batch"] = batch.ToString(CultureInfo.InvariantCulture),
            ["lr"] = lr.ToString(CultureInfo.InvariantCulture),
            ["ema"] = emaDecay.ToString(CultureInfo.InvariantCulture),
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["wall_seconds"] = wall.ToString("F0", CultureInfo.InvariantCulture),
            ["command"] = "./run.sh " + string.Join(" ", args),
        };
        SafeTensors.SaveModule(ema, output, metadata);
        Console.WriteLine($"Wrote EMA weights to {output} ({new FileInfo(output).Length / 1e6:F1} MB) after {steps} steps, {wall / 60:F1} min of training, final loss ≈ {lossAvg:F4}.");
        return 0;
    }

    public static string Describe(DiTConfig c) =>
        $"DiT (hidden {c.HiddenSize}, depth {c.Depth}, heads {c.NumHeads}, patch {c.PatchSize} on {c.InputSize}×{c.InputSize}×{c.InChannels}, {c.NumClasses} classes)";

    private static void SaveCheckpoint(DiT model, DiT ema, TorchSharp.Modules.AdamW optimizer, string checkpoint, string optimizerState, int step, double elapsed, long seed)
    {
        var tensors = model.state_dict().Select(kv => ("model." + kv.Key, kv.Value))
            .Concat(ema.state_dict().Select(kv => ("ema." + kv.Key, kv.Value)));
        string tempOptimizer = optimizerState + ".tmp";
        optimizer.save_state_dict(tempOptimizer);
        SafeTensors.Save(checkpoint, tensors, new Dictionary<string, string>
        {
            ["step"] = step.ToString(CultureInfo.InvariantCulture),
            ["elapsed_seconds"] = elapsed.ToString("R", CultureInfo.InvariantCulture),
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
        });
        File.Move(tempOptimizer, optimizerState, overwrite: true);
    }

    private static void CopyInto(nn.Module target, nn.Module source)
    {
        using var noGrad = torch.no_grad();
        var src = source.state_dict();
        foreach (var (name, t) in target.state_dict()) t.copy_(src[name]);
    }

    private static void UpdateEma(DiT ema, DiT model, double decay)
    {
        using var noGrad = torch.no_grad();
        var current = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in ema.named_parameters()) p.mul_(decay).add_(current[name], alpha: 1 - decay);
    }

    private static void ProgressLine(int done, int total, string text)
    {
        if (Console.IsErrorRedirected)
        {
            if (done % 100 == 0 || done == total) Console.Error.WriteLine($"step {done}/{total}  {text}");
            return;
        }
        int width = 30, filled = (int)((long)done * width / total);
        Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {done}/{total}  {text}   ");
    }
}
