using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// Stopwatch timings side by side in one process, for quick looks between BenchmarkDotNet runs:
/// <c>quick-gemm [M K N]</c> (the VNNI peak, fp32/bf16 matmul and the integer linears at one shape),
/// <c>quick-dit [model]</c> (one DiT forward per mode, the time inside the integer linears,
/// and the process's peak resident memory), <c>quick-ops</c> (a DiT block's non-linear ops in TorchSharp),
/// <c>quick-fused</c> (the same ops as the kernels' fused prologue / epilogue), <c>quick-managed [M K N]</c>
/// (the managed fallback's AVX-VNNI and AVX2 paths beside the native kernel) and <c>quick-block</c>
/// (one DiT-S/2 block's four integer linears with their fusions), <c>quick-lowrank [M K N]</c> (the fused SmoothQuant scale,
/// SVDQuant branch and QuaRot rotation on one W4A4 g64 linear, interleaved). Each figure is the median of several timed runs after
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
            case "quick-managed":
                Managed(args.Length > 3 ? int.Parse(args[1]) : 1024, args.Length > 3 ? int.Parse(args[2]) : 1152, args.Length > 3 ? int.Parse(args[3]) : 4608);
                return true;
            case "quick-dit":
                Dit(args.Length > 1 ? args[1] : "DiT-S/2-b4", args.Length > 2 ? args[2].Split(',') : ["FP32", "BF16", "W8A8-int", "W4A8-int"],
                    args.Length > 3 ? double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 12);
                return true;
            case "quick-ops":
                Ops();
                return true;
            case "quick-fused":
                Fused();
                return true;
            case "quick-block":
                Block();
                return true;
            case "quick-lowrank":
                LowRank(args.Length > 3 ? int.Parse(args[1]) : 1024, args.Length > 3 ? int.Parse(args[2]) : 1152, args.Length > 3 ? int.Parse(args[3]) : 4608);
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

    // Random weight codes [n, k] on the kernels' restricted grids: int8 in ±127, and int4 nibbles
    // (two per byte) in ±7.
    private static (sbyte[] W8, byte[] W4) RandomWeightCodes(int n, int k, Random rng)
    {
        var w8 = Enumerable.Range(0, n * k).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var w4 = new byte[n * ((k + 1) / 2)];
        rng.NextBytes(w4);
        for (int i = 0; i < w4.Length; i++) { if ((w4[i] & 0xF) == 8) w4[i] ^= 1; if ((w4[i] >> 4) == 8) w4[i] ^= 0x10; }
        return (w8, w4);
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
        var (w8, w4) = RandomWeightCodes(n, k, new Random(1));
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

    // The managed fallback's vector paths side by side (W8A8 and W4A8 g64 linears, activation
    // quantization included), each against the native AVX-512 kernel of the same call.
    private static void Managed(int m, int k, int n)
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}  AVX-VNNI {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}");
        var rng = new Random(1);
        var xs = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var (w8, w4) = RandomWeightCodes(n, k, rng);
        using var p8 = PackedWeights.FromInt8(w8, Enumerable.Repeat(0.01f, n).ToArray(), n, k);
        using var p4 = PackedWeights.FromInt4(w4, Enumerable.Repeat(0.01f, n * ((k + 63) / 64)).ToArray(), n, k, groupSize: 64);
        var codes = new sbyte[m * k];
        var scales = new float[m];
        var y = new float[m * n];
        var managed = new KernelOptions { Isa = KernelIsa.Managed, Threads = 2 };
        var native = new KernelOptions { Threads = 2 };
        double ops = 2.0 * m * n * k;
        Console.WriteLine($"M={m} K={k} N={n}, 2 threads, median ms");
        // Warm-up, full-size calls of every managed path for ≥ 2 s: the first timed path otherwise ran
        // 3-7x slower than the same path timed later in the process (JIT tiers, thread pool).
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < 2)
            foreach (bool vnni in new[] { true, false })
            {
                AdaTSQ.Kernels.Managed.ManagedGemm.UseAvxVnni = vnni;
                IntegerGemm.Linear(xs, m, p8, 8, [], y, codes, scales, managed);
                IntegerGemm.Linear(xs, m, p4, 8, [], y, codes, scales, managed);
            }
        foreach (var (name, vnni) in new[] { ("managed AVX-VNNI", true), ("managed AVX2", false) })
        {
            if (vnni && !System.Runtime.Intrinsics.X86.AvxVnni.IsSupported) continue;
            AdaTSQ.Kernels.Managed.ManagedGemm.UseAvxVnni = vnni;
            double t8 = Median(() => IntegerGemm.Linear(xs, m, p8, 8, [], y, codes, scales, managed), 20);
            double t4 = Median(() => IntegerGemm.Linear(xs, m, p4, 8, [], y, codes, scales, managed), 20);
            double g8 = Median(() => IntegerGemm.Gemm(codes, scales, m, p8, [], y, managed), 20);
            Console.WriteLine($"{name,-20} W8A8 {t8,9:F3} ms {ops / t8 / 1e6,6:F0} GOPS   W4A8 g64 {t4,9:F3} ms {ops / t4 / 1e6,6:F0} GOPS   W8A8 codes given {g8,9:F3} ms {ops / g8 / 1e6,6:F0} GOPS");
        }
        AdaTSQ.Kernels.Managed.ManagedGemm.UseAvxVnni = System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
        double q = Median(() => IntegerGemm.QuantizeActivations(xs, m, k, 8, codes, scales, 1.0, managed), 5);
        Console.WriteLine($"{"managed activation quantization",-32} {q,9:F3} ms");
        double n8 = Median(() => IntegerGemm.Linear(xs, m, p8, 8, [], y, codes, scales, native), 10);
        double n4 = Median(() => IntegerGemm.Linear(xs, m, p4, 8, [], y, codes, scales, native), 10);
        Console.WriteLine($"{"native " + NativeKernels.BestIsa,-20} W8A8 {n8,9:F3} ms {ops / n8 / 1e6,6:F0} GOPS   W4A8 g64 {n4,9:F3} ms {ops / n4 / 1e6,6:F0} GOPS");
    }

    // One model per mode: the random DiT, cast (BF16) or quantized with RTN and attached to the integer kernels (-int).
    private sealed class DitCase : IDisposable
    {
        public DitCase(string model, string mode)
        {
            Mode = mode;
            var (config, batch) = model == "Mnist-b64" ? (DiTConfig.Mnist, 64) : (DiTConfig.Named("DiT-S/2"), 4);
            Dit = new DiT(config, seed: 1);
            Dit.eval();
            using (torch.no_grad())
                foreach (var (_, p) in Dit.named_parameters()) p.normal_(0, 0.05);
            X = torch.randn(batch, config.InChannels, config.InputSize, config.InputSize);
            T = torch.full(batch, 500f);
            Y = torch.zeros(batch, ScalarType.Int64);
            if (mode == "BF16") { Dit.to(ScalarType.BFloat16); var xb = X.to(ScalarType.BFloat16); X.Dispose(); X = xb; }
            if (mode.EndsWith("-int"))
            {
                BenchmarkModels.Quantize(Dit, mode);
                Kernel = new IntegerLinearKernel(new KernelOptions { Threads = 2 }) { Strict = true };
                IntegerLinearKernel.Attach(Dit, Kernel);
            }
        }

        public string Mode { get; }
        public DiT Dit { get; }
        public Tensor X { get; private set; }
        public Tensor T { get; }
        public Tensor Y { get; }
        public IntegerLinearKernel? Kernel { get; }

        public void Forward()
        {
            using var noGrad = torch.no_grad();
            using var o = Dit.call(X, T, Y);
        }

        public void Dispose() { Kernel?.Dispose(); Dit.Dispose(); X.Dispose(); T.Dispose(); Y.Dispose(); }
    }

    private static void Dit(string model, string[] modes, double seconds = 12)
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}");
        if (modes.Length > 1) { Interleaved(model, modes, seconds); return; }
        using var c = new DitCase(model, modes[0]);
        var kernel = c.Kernel;
        c.Forward();
        double rssBefore = Status("VmRSS:");
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
        long calls0 = kernel?.IntegerCalls ?? 0;
        var kernelTime0 = kernel?.KernelTime ?? TimeSpan.Zero;
        int runs = 0;
        double ms = Median(() => { c.Forward(); runs++; }, 7, 2.0);
        double inKernel = kernel is null ? 0 : (kernel.KernelTime - kernelTime0).TotalMilliseconds / runs; // runs counts the warm-ups too
        long callsPer = kernel is null ? 0 : (kernel.IntegerCalls - calls0) / runs;
        long paramBytes = c.Dit.parameters().Sum(p => p.numel() * p.element_size());
        Console.WriteLine($"{model,-11} {c.Mode,-9} {ms,9:F1} ms" + (kernel is null ? "" : $"   integer linears {inKernel:F1} ms/forward ({callsPer} calls), rest {ms - inKernel:F1} ms") +
            $"   RSS before forwards {rssBefore:F0} MB, peak during {Status("VmHWM:"):F0} MB; parameters {paramBytes / 1048576.0:F1} MB" +
            (kernel is null ? "" : $", packed weights {kernel.PackedWeightBytes / 1048576.0:F1} MB"));
        Console.WriteLine($"process peak RSS (VmHWM) {Status("VmHWM:"):F0} MB; load after: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    // All modes built first, then timed in rounds (one forward of each mode per round, the order rotating):
    // drifts of the machine's speed hit every mode alike, and the ratios are medians of per-round ratios.
    private static void Interleaved(string model, string[] modes, double seconds)
    {
        var cases = modes.Select(m => new DitCase(model, m)).ToList();
        try
        {
            foreach (var c in cases) { c.Forward(); c.Forward(); }
            var times = cases.ToDictionary(c => c.Mode, _ => new List<double>());
            var kernel0 = cases.ToDictionary(c => c.Mode, c => c.Kernel?.KernelTime ?? TimeSpan.Zero);
            var total = Stopwatch.StartNew();
            int rounds = 0;
            while (rounds < 9 || total.Elapsed.TotalSeconds < seconds)
            {
                for (int i = 0; i < cases.Count; i++)
                {
                    var c = cases[(i + rounds) % cases.Count];
                    long t0 = Stopwatch.GetTimestamp();
                    c.Forward();
                    times[c.Mode].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                rounds++;
            }
            double Med(IEnumerable<double> v) { var a = v.OrderBy(x => x).ToArray(); return a[a.Length / 2]; }
            string baseline = modes[0];
            Console.WriteLine($"{model}: {rounds} rounds, one forward of each mode per round (medians; ratio = median over rounds of {baseline} time / mode time)");
            foreach (var c in cases)
            {
                var t = times[c.Mode];
                double ratio = Med(t.Select((v, i) => times[baseline][i] / v));
                string inKernel = c.Kernel is null ? "" : $"   integer linears {(c.Kernel.KernelTime - kernel0[c.Mode]).TotalMilliseconds / rounds:F1} ms/forward";
                Console.WriteLine($"{model,-11} {c.Mode,-9} {Med(t),9:F1} ms  (min {t.Min():F1}, max {t.Max():F1})  {baseline}/{c.Mode} {ratio:F2}x{inKernel}");
            }
            Console.WriteLine($"load after: {File.ReadAllText("/proc/loadavg").Trim()}");
        }
        finally
        {
            foreach (var c in cases) c.Dispose();
        }
    }

    // The fused transforms (ABI 5) on one W4A4 g64 linear with per-group activations, interleaved like quick-dit: one call
    // of each case per round, the order rotating; ratios are medians of the per-round ratios to "W4A4 g64 a64".
    private static void LowRank(int m, int k, int n)
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}  isa {NativeKernels.BestIsa}  M={m} K={k} N={n}, 2 threads");
        torch.manual_seed(0);
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(m, k);
        var (_, w4) = RandomWeightCodes(n, k, new Random(1));
        using var p4 = PackedWeights.FromInt4(w4, Enumerable.Repeat(0.01f, n * (k / 64)).ToArray(), n, k, groupSize: 64);
        var opts = new KernelOptions { Threads = 2 };
        var inv = torch.rand(k) + 0.5;
        var d16 = torch.randn(16, k) * 0.01; var u16 = torch.randn(n, 16) * 0.01;
        var d32 = torch.randn(32, k) * 0.01; var u32 = torch.randn(n, 32) * 0.01;
        using var hadamard = AdaTSQ.Methods.QuaRot.HadamardRotation.Create(k, seed: 0);
        var lr16 = new LinearTransforms { InputScale = inv, LowRankDown = d16, LowRankUp = u16 };
        var lr32 = new LinearTransforms { InputScale = inv, LowRankDown = d32, LowRankUp = u32 };
        var rot = new LinearTransforms { Rotation = hadamard.ToFusedRotation() };
        var cases = new (string Name, Action Run)[]
        {
            ("W4A4 g64 a64", () => { using var y = TorchIntegerGemm.Linear(x, p4, 4, null, 1, opts, null, 64); }),
            ("W4A8 g64", () => { using var y = TorchIntegerGemm.Linear(x, p4, 8, null, 1, opts); }),
            ("+ 1/s + LR16 fused", () => { using var y = TorchIntegerGemm.Linear(x, p4, 4, null, 1, opts, null, 64, lr16); }),
            ("+ 1/s + LR32 fused", () => { using var y = TorchIntegerGemm.Linear(x, p4, 4, null, 1, opts, null, 64, lr32); }),
            ("+ 1/s + LR32 unfused", () =>
            {
                using var s2 = torch.NewDisposeScope();
                var xt = x * inv;
                var y = TorchIntegerGemm.Linear(xt, p4, 4, null, 1, opts, null, 64);
                y.add_(xt.matmul(d32.t()).matmul(u32.t()));
            }),
            ($"+ {hadamard.Description.Split(',')[0]} fused", () => { using var y = TorchIntegerGemm.Linear(x, p4, 4, null, 1, opts, null, 64, rot); }),
            ($"+ {hadamard.Description.Split(',')[0]} unfused", () => { using var xr = hadamard.Rotate(x); using var y = TorchIntegerGemm.Linear(xr, p4, 4, null, 1, opts, null, 64); }),
        };
        foreach (var c in cases) { c.Run(); c.Run(); }
        var times = cases.Select(_ => new List<double>()).ToArray();
        var total = Stopwatch.StartNew();
        int rounds = 0;
        while (rounds < 15 || total.Elapsed.TotalSeconds < 15)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                int j = (i + rounds) % cases.Length;
                long t0 = Stopwatch.GetTimestamp();
                cases[j].Run();
                times[j].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            rounds++;
        }
        double Med(IEnumerable<double> v) { var a = v.OrderBy(t => t).ToArray(); return a[a.Length / 2]; }
        Console.WriteLine($"{rounds} rounds (medians; ratio = median over rounds of the case's time / W4A4 g64 a64's)");
        for (int i = 0; i < cases.Length; i++)
            Console.WriteLine($"{cases[i].Name,-36} {Med(times[i]),9:F2} ms  (min {times[i].Min():F2})  {Med(times[i].Select((t, r) => t / times[0][r])):F3}x");
        Console.WriteLine($"load after: {File.ReadAllText("/proc/loadavg").Trim()}");
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

    // The four integer linears of one DiT-S/2 block at batch 4 (1,024 tokens), alone, with the fusions the model uses.
    private static void Block()
    {
        Console.WriteLine($"{DateTime.UtcNow:u}  load {File.ReadAllText("/proc/loadavg").Trim()}  isa {NativeKernels.BestIsa}");
        var options = new KernelOptions { Threads = 2 };
        PackedWeights W(int n, int k)
        {
            using var q = QuantizedTensor.Quantize(torch.randn(n, k) * 0.05, QuantSpec.Weight(8));
            return IntegerLinearKernel.Pack(q);
        }
        using var wqkv = W(1152, 384);
        using var wproj = W(384, 384);
        using var wfc1 = W(1536, 384);
        using var wfc2 = W(384, 1536);
        using var x = torch.randn(4, 256, 384);
        using var o = torch.randn(4, 256, 384);
        using var h = torch.randn(4, 256, 1536);
        using var shift = torch.randn(4, 384);
        using var scale = torch.randn(4, 384);
        using var gate = torch.randn(4, 384);
        using var b1152 = torch.randn(1152);
        using var b384 = torch.randn(384);
        using var b1536 = torch.randn(1536);
        var mod = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale };
        var res = new FusedLinearOps { Residual = x, Gate = gate };
        var gelu = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale, Activation = FusedActivation.GeluTanh };
        double tQkv = Median(() => { using var y = TorchIntegerGemm.Linear(x, wqkv, 8, b1152, 1, options, mod); }, 30);
        double tProj = Median(() => { using var y = TorchIntegerGemm.Linear(o, wproj, 8, b384, 1, options, res); }, 30);
        double tFc1 = Median(() => { using var y = TorchIntegerGemm.Linear(x, wfc1, 8, b1536, 1, options, gelu); }, 30);
        double tFc2 = Median(() => { using var y = TorchIntegerGemm.Linear(h, wfc2, 8, b384, 1, options, res); }, 30);
        double tAll = Median(() =>
        {
            using var a = TorchIntegerGemm.Linear(x, wqkv, 8, b1152, 1, options, mod);
            using var b = TorchIntegerGemm.Linear(o, wproj, 8, b384, 1, options, res);
            using var c = TorchIntegerGemm.Linear(x, wfc1, 8, b1536, 1, options, gelu);
            using var d = TorchIntegerGemm.Linear(c, wfc2, 8, b384, 1, options, res);
        }, 30);
        Console.WriteLine($"W8A8 fused, one DiT-S/2 block (M = 1024): qkv+LN/modulate {tQkv:F3} ms, proj+residual {tProj:F3} ms, fc1+LN/modulate+GELU {tFc1:F3} ms, " +
            $"fc2+residual {tFc2:F3} ms; sum {tQkv + tProj + tFc1 + tFc2:F2} ms, the four in a row {tAll:F2} ms; ×12 = {12 * tAll:F1} ms");
    }

    /// <summary>A field of /proc/self/status in kB (VmRSS: resident now; VmHWM: peak since start or the last clear_refs 5), in MB.</summary>
    public static double Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field)) return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return double.NaN;
    }
}
