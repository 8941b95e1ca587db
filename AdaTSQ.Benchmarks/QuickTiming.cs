using System.Diagnostics;
using AdaTSQ.Kernels;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// Stopwatch timings side by side in one process, for quick looks between BenchmarkDotNet runs:
/// <c>quick-gemm [M K N]</c> (the VNNI peak, fp32/bf16 matmul and the integer linears at one shape)
/// and <c>quick-dit [model]</c> (one DiT forward per mode, the time inside the integer linears,
/// and the process's peak resident memory). Each figure is the median of several timed runs after
/// warm-up; 2 threads.
/// </summary>
public static class QuickTiming
{
    /// <summary>Runs the mode named by <paramref name="args"/>[0]; false when it is not a quick mode.</summary>
    public static bool TryRun(string[] args)
    {
        if (args.Length == 0) return false;
        torch.set_num_threads(2);
        switch (args[0])
        {
            case "quick-gemm":
                int m = args.Length > 3 ? int.Parse(args[1]) : 1024, k = args.Length > 3 ? int.Parse(args[2]) : 1152, n = args.Length > 3 ? int.Parse(args[3]) : 4608;
                Gemm(m, k, n);
                return true;
            case "quick-dit":
                Dit(args.Length > 1 ? args[1] : "DiT-S/2-b4", args.Length > 2 ? args[2].Split(',') : ["FP32", "BF16", "W8A8-int", "W4A8-int"]);
                return true;
            case "quick-ops":
                Ops();
                return true;
            case "quick-fused":
                Fused();
                return true;
            default:
                return false;
        }
    }

    private static double Median(Action run, int reps, double minSeconds = 0.5)
    {
        run(); run();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < reps || total.Elapsed.TotalSeconds < minSeconds)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static void Gemm(int m, int k, int n)
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}  isa {NativeKernels.BestIsa}");
        double peak = IntegerGemm.MeasureVnniPeakGops(KernelIsa.Avx512Vnni, 50_000_000, 2);
        double peak1 = IntegerGemm.MeasureVnniPeakGops(KernelIsa.Avx512Vnni, 50_000_000, 1);
        Console.WriteLine($"register-only vpdpbusd peak: {peak:F0} GOPS (2 threads), {peak1:F0} (1 thread)");
        torch.manual_seed(0);
        using var x = torch.randn(m, k);
        using var w = torch.randn(n, k);
        using var xb = x.to(ScalarType.BFloat16);
        using var wb = w.to(ScalarType.BFloat16);
        using var wt = w.t();
        using var wbt = wb.t();
        var rng = new Random(1);
        var w8 = Enumerable.Range(0, n * k).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var w4 = new byte[n * ((k + 1) / 2)];
        rng.NextBytes(w4);
        for (int i = 0; i < w4.Length; i++) { if ((w4[i] & 0xF) == 8) w4[i] ^= 1; if ((w4[i] >> 4) == 8) w4[i] ^= 0x10; }
        using var p8 = PackedWeights.FromInt8(w8, Enumerable.Repeat(0.01f, n).ToArray(), n, k);
        using var p4 = PackedWeights.FromInt4(w4, Enumerable.Repeat(0.01f, n * ((k + 63) / 64)).ToArray(), n, k, groupSize: 64);
        using var p4c = PackedWeights.FromInt4(w4, Enumerable.Repeat(0.01f, n).ToArray(), n, k);
        var xs = x.data<float>().ToArray();
        var codes = new sbyte[m * k];
        var scales = new float[m];
        var y = new float[m * n];
        var ci = new int[m * n];
        var opts = new KernelOptions { Threads = 2 };
        double ops = 2.0 * m * n * k;
        void Row(string name, double ms) => Console.WriteLine($"{name,-28} {ms,9:F3} ms {ops / ms / 1e6,8:F0} GOPS {100 * ops / ms / 1e6 / peak,5:F0} % peak");
        double fp32 = Median(() => { using var r = torch.matmul(x, wt); }, 10);
        double bf16 = Median(() => { using var r = torch.matmul(xb, wbt); }, 10);
        double quant = Median(() => IntegerGemm.QuantizeActivations(xs, m, k, 8, codes, scales, 1.0, opts), 20);
        double i32 = Median(() => IntegerGemm.Int32(codes, m, p8, ci, opts), 20);
        double g8 = Median(() => IntegerGemm.Gemm(codes, scales, m, p8, [], y, opts), 20);
        double w8a8 = Median(() => IntegerGemm.Linear(xs, m, p8, 8, [], y, codes, scales, opts), 20);
        double w4a8 = Median(() => IntegerGemm.Linear(xs, m, p4, 8, [], y, codes, scales, opts), 20);
        double fused = Median(() => IntegerGemm.Linear(xs, m, p8, 8, [], y, 1.0, opts), 20);
        double fused4 = Median(() => IntegerGemm.Linear(xs, m, p4, 8, [], y, 1.0, opts), 20);
        double fused4c = Median(() => IntegerGemm.Linear(xs, m, p4c, 8, [], y, 1.0, opts), 20);
        using var xt = torch.randn(m, k);
        double tlin = Median(() => { using var r = TorchIntegerGemm.Linear(xt, p8, 8, null, 1.0, opts); }, 20);
        Console.WriteLine($"M={m} K={k} N={n}, 2 threads, median ms");
        Row("TorchSharp fp32 matmul", fp32);
        Row("TorchSharp bf16 matmul", bf16);
        Console.WriteLine($"{"activation quantization",-28} {quant,9:F3} ms");
        Row("int32 A·Bᵀ (no epilogue)", i32);
        Row("W8A8 gemm (codes given)", g8);
        Row("W8A8 linear (quant+gemm)", w8a8);
        Row("W4A8 g64 linear", w4a8);
        Row("W8A8 linear, fused quant", fused);
        Row("W4A8 g64 linear, fused quant", fused4);
        Row("W4A8 per-channel, fused", fused4c);
        Row("W8A8 TorchIntegerGemm", tlin);
        Console.WriteLine($"W8A8 linear vs fp32 {fp32 / w8a8:F2}x, vs bf16 {bf16 / w8a8:F2}x; W4A8 vs fp32 {fp32 / w4a8:F2}x; fused W8A8 vs fp32 {fp32 / fused:F2}x, vs bf16 {bf16 / fused:F2}x; fused W4A8 vs fp32 {fp32 / fused4:F2}x (per-channel {fp32 / fused4c:F2}x); " +
            $"weight bytes fp32 {4L * n * k:N0}, W8 {p8.StorageBytes:N0}, W4 g64 {p4.StorageBytes:N0}");
        Console.WriteLine($"load after: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    private static void Dit(string model, string[] modes)
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}");
        foreach (var mode in modes)
        {
            var (config, batch) = model == "Mnist-b64" ? (DiTConfig.Mnist, 64) : (DiTConfig.Named("DiT-S/2"), 4);
            using var dit = new DiT(config, seed: 1);
            dit.eval();
            using (torch.no_grad())
                foreach (var (_, p) in dit.named_parameters()) p.normal_(0, 0.05);
            var x = torch.randn(batch, config.InChannels, config.InputSize, config.InputSize);
            using var t = torch.full(batch, 500f);
            using var y = torch.zeros(batch, ScalarType.Int64);
            IntegerLinearKernel? kernel = null;
            if (mode == "BF16") { dit.to(ScalarType.BFloat16); var xb = x.to(ScalarType.BFloat16); x.Dispose(); x = xb; }
            if (mode.EndsWith("-int"))
            {
                var spec = mode.StartsWith("W8") ? QuantSpec.Weight(8) : QuantSpec.Weight(4, groupSize: 64);
                ModelSurgery.ReplaceLinears(dit);
                foreach (var q in ModelSurgery.FindQuantLinears(dit))
                {
                    var s = q.InFeatures % 64 == 0 ? spec : QuantSpec.Weight(spec.Bits);
                    q.SetWeightVersion(QuantizedTensor.Quantize(q.Weight, s));
                    q.DefaultConfig = new LayerQuantConfig(s, QuantSpec.Activation(8));
                }
                kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
                IntegerLinearKernel.Attach(dit, kernel);
            }
            void Forward()
            {
                using var noGrad = torch.no_grad();
                using var o = dit.call(x, t, y);
            }
            Forward();
            double rssBefore = Status("VmRSS:");
            File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
            long calls0 = kernel?.IntegerCalls ?? 0;
            var kernelTime0 = kernel?.KernelTime ?? TimeSpan.Zero;
            int runs = 0;
            double ms = Median(() => { Forward(); runs++; }, 7, 2.0);
            double inKernel = kernel is null ? 0 : (kernel.KernelTime - kernelTime0).TotalMilliseconds / runs; // runs counts the warm-ups too
            long callsPer = kernel is null ? 0 : (kernel.IntegerCalls - calls0) / runs;
            long paramBytes = dit.parameters().Sum(p => p.numel() * p.element_size());
            Console.WriteLine($"{model,-11} {mode,-9} {ms,9:F1} ms" + (kernel is null ? "" : $"   integer linears {inKernel:F1} ms/forward ({callsPer} calls), rest {ms - inKernel:F1} ms") +
                $"   RSS before forwards {rssBefore:F0} MB, peak during {Status("VmHWM:"):F0} MB; parameters {paramBytes / 1048576.0:F1} MB" +
                (kernel is null ? "" : $", packed weights {kernel.PackedWeightBytes / 1048576.0:F1} MB"));
            kernel?.Dispose();
            x.Dispose();
        }
        Console.WriteLine($"process peak RSS (VmHWM) {Status("VmHWM:"):F0} MB; load after: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    // The non-linear work of one DiT-S/2 block at batch 4 (1,024 tokens), op by op, fp32 and bf16.
    private static void Ops()
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}");
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var x = torch.randn(4, 256, 384).to(dtype);
            using var qkv = torch.randn(4, 256, 1152).to(dtype);
            using var h = torch.randn(4, 256, 1536).to(dtype);
            using var shift = torch.randn(4, 384).to(dtype);
            using var scale = torch.randn(4, 384).to(dtype);
            using var ln = nn.LayerNorm(384, eps: 1e-6, elementwise_affine: false);
            double tLn = Median(() => { using var r = ln.call(x); }, 20);
            double tMod = Median(() => { using var r = DiTBlock.Modulate(x, shift, scale); }, 20);
            double tAttn = Median(() =>
            {
                using var scope = torch.NewDisposeScope();
                var parts = qkv.reshape(4, 256, 3, 6, 64).permute(2, 0, 3, 1, 4);
                var o = nn.functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
                _ = o.transpose(1, 2).reshape(4, 256, 384);
            }, 20);
            double tGelu = Median(() => { using var r = nn.functional.gelu(h, TorchSharp.Modules.GELU.Approximate.tanh); }, 20);
            double tRes = Median(() => { using var g = shift.unsqueeze(1) * x; using var r = x + g; }, 20);
            Console.WriteLine($"{dtype,-9} per block: LayerNorm {tLn:F3} ms ×2, modulate {tMod:F3} ms ×2, attention (sdpa + reshapes) {tAttn:F3} ms, " +
                $"GELU-tanh {tGelu:F3} ms, gated residual {tRes:F3} ms ×2 → {2 * tLn + 2 * tMod + tAttn + tGelu + 2 * tRes:F2} ms per block, ×12 = {12 * (2 * tLn + 2 * tMod + tAttn + tGelu + 2 * tRes):F1} ms");
        }
    }

    // The element-wise work the integer DiT path fuses, alone: the native prologue / epilogue vs TorchSharp, DiT-S/2 block shapes at batch 4.
    private static void Fused()
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}  isa {NativeKernels.BestIsa}");
        var options = new KernelOptions { Threads = 2 };
        using var x = torch.randn(4, 256, 384);
        using var h = torch.randn(4, 256, 1536);
        using var shift = torch.randn(4, 384);
        using var scale = torch.randn(4, 384);
        using var gate = torch.randn(4, 384);
        var mod = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale };
        var gelu = new FusedLinearOps { Activation = FusedActivation.GeluTanh };
        var res = new FusedLinearOps { Residual = x, Gate = gate };
        double tModTorch = Median(() => { using var r = mod.ComposePrologue(x); }, 50);
        double tModNative = Median(() => { using var r = TorchIntegerGemm.LayerNormModulate(x, mod, options); }, 50);
        using var hc = h.clone();
        double tGeluTorch = Median(() => { using var r = gelu.ComposeEpilogue(h); }, 50);
        double tGeluNative = Median(() => { hc.copy_(h); TorchIntegerGemm.ApplyEpilogue(hc, gelu, options); }, 50);
        double tCopy = Median(() => { hc.copy_(h); }, 50);
        using var y = torch.randn(4, 256, 384);
        using var yc = y.clone();
        double tResTorch = Median(() => { using var r = res.ComposeEpilogue(y); }, 50);
        double tResNative = Median(() => { yc.copy_(y); TorchIntegerGemm.ApplyEpilogue(yc, res, options); }, 50);
        double tCopy2 = Median(() => { yc.copy_(y); }, 50);
        Console.WriteLine($"LayerNorm + modulate [4,256,384]: TorchSharp {tModTorch:F3} ms, native {tModNative:F3} ms");
        Console.WriteLine($"GELU-tanh [4,256,1536]:           TorchSharp {tGeluTorch:F3} ms, native {tGeluNative - tCopy:F3} ms (+ {tCopy:F3} ms copy not counted)");
        Console.WriteLine($"gated residual [4,256,384]:       TorchSharp {tResTorch:F3} ms, native {tResNative - tCopy2:F3} ms (+ {tCopy2:F3} ms copy not counted)");
    }

    /// <summary>A field of /proc/self/status in kB (VmRSS: resident now; VmHWM: peak since start or the last clear_refs 5), in MB.</summary>
    public static double Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field)) return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return double.NaN;
    }
}
