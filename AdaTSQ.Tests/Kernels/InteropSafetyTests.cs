using System.Reflection;
using System.Runtime.InteropServices;
using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Kernels.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// Lifetimes across the P/Invoke boundary: packed weights and tensor arguments disposed while a call
/// uses them (on another thread), disposed arguments, the reference count on the packed memory, and
/// where data pointers come from.
/// </summary>
/// <remarks>
/// The concurrent tests do not depend on timing: <see cref="PackedWeights.LeaseTakenHook"/> runs on
/// the calling thread once the call holds its references and before any kernel code, and the test
/// thread disposes at that point (optionally keeping the call blocked until it has). The memory at
/// stake is 32 MiB or more, which glibc always serves by <c>mmap</c>, so code that freed it under a
/// running call would fault (or, where the block is mapped again, read the garbage the tests write
/// into fresh blocks of the same size) instead of passing by luck.
/// </remarks>
[NonParallelizable]
public class InteropSafetyTests
{
    // 8-bit weights [N, K] of 32 MiB.
    private const int BigN = 4096, BigK = 8192;

    private static readonly TimeSpan DeadlockGuard = TimeSpan.FromMinutes(5);

    private static KernelOptions Options(string path)
    {
        if (path == "native") NativeTestSupport.RequireNativeLibrary();
        var isa = path == "native" ? NativeKernels.BestIsa : KernelIsa.Managed;
        return new KernelOptions { Isa = isa, Threads = 2 };
    }

    private static PackedWeights RandomWeights(int n, int k, int seed)
    {
        var rng = new Random(seed);
        var codes = new sbyte[(long)n * k];
        for (long i = 0; i < codes.LongLength; i++) codes[i] = (sbyte)rng.Next(-127, 128);
        var scales = Enumerable.Range(0, n).Select(i => 1e-3f * (1 + i % 7)).ToArray();
        return PackedWeights.FromInt8(codes, scales, n, k);
    }

    /// <summary>Allocates (through glibc, as libtorch and the packed weights do) a block of <paramref name="bytes"/> filled with a pattern, so that memory freed too early holds garbage.</summary>
    private static Tensor Scribble(long bytes) => torch.full([(bytes + 3) / 4], BitConverter.Int32BitsToSingle(0x7F7F7F7F));

    /// <summary>Bit for bit (float equality would let −0 pass for +0).</summary>
    private static bool BitIdentical(float[] actual, float[] expected) =>
        MemoryMarshal.Cast<float, int>(actual).SequenceEqual(MemoryMarshal.Cast<float, int>(expected));

    private static void Wait(ManualResetEventSlim e, string what) =>
        Assert.That(e.Wait(DeadlockGuard), Is.True, $"deadlock guard: {what} did not happen");

    // ---- (a) dispose the packed weights while a call holds them ---------------------------------

    [Test]
    public void DisposingWeightsDuringACallLetsItFinishAndLaterCallsThrow([Values("native", "managed")] string path, [Values("Gemm", "Linear")] string api)
    {
        var options = Options(path);
        const int m = 64;
        var rng = new Random(5);
        var a = Enumerable.Range(0, m * BigK).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var sa = Enumerable.Range(0, m).Select(i => 0.01f + i * 1e-4f).ToArray();
        var x = Enumerable.Range(0, m * BigK).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = RandomWeights(BigN, BigK, 6);
        void Call(PackedWeights weights, float[] y)
        {
            if (api == "Gemm") IntegerGemm.Gemm(a, sa, m, weights, [], y, options);
            else IntegerGemm.Linear(x, m, weights, 8, [], y, 1.0, options);
        }
        var expected = new float[m * BigN];
        Call(w, expected);

        using var entered = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        w.LeaseTakenHook = () => { entered.Set(); Wait(proceed, "the test thread's dispose"); };
        var actual = new float[m * BigN];
        var call = Task.Run(() => Call(w, actual));
        Wait(entered, "the call");
        Tensor? garbage = null;
        try
        {
            w.Dispose();
            Assert.That(w.IsDisposed, Is.True);
            Assert.That(w.Memory.IsReleased, Is.False, "the memory is freed while a call still holds it");
            w.LeaseTakenHook = null;
            Assert.Throws<ObjectDisposedException>(() => Call(w, new float[m * BigN]), "a call started after Dispose, while another holds the memory");
            garbage = Scribble(w.StorageBytes);
        }
        finally
        {
            proceed.Set();
        }
        try
        {
            Assert.That(call.Wait(DeadlockGuard), Is.True, "deadlock guard: the call did not finish");
            Assert.That(BitIdentical(actual, expected), Is.True, "the call that held the weights computed on freed memory");
            Assert.That(w.Memory.IsReleased, Is.True, "the memory is freed when the last call returns");
            var e = Assert.Throws<ObjectDisposedException>(() => Call(w, new float[m * BigN]))!;
            Assert.That(e.ObjectName, Is.EqualTo("weights"));
        }
        finally
        {
            garbage?.Dispose();
        }
    }

    [Test]
    public void DisposingWeightsWhileALargeGemmRunsIsSafe()
    {
        // No blocking here: the hook only says the call holds its reference, and the test thread
        // disposes at once, while the (long) kernel runs. Whatever the interleaving, the assertions hold.
        var options = Options("native");
        const int m = 512;
        var rng = new Random(7);
        var x = Enumerable.Range(0, m * BigK).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = RandomWeights(BigN, BigK, 8);
        var expected = new float[m * BigN];
        IntegerGemm.Linear(x, m, w, 8, [], expected, 1.0, options);

        using var entered = new ManualResetEventSlim();
        w.LeaseTakenHook = entered.Set;
        var actual = new float[m * BigN];
        var call = Task.Run(() => IntegerGemm.Linear(x, m, w, 8, [], actual, 1.0, options));
        Wait(entered, "the call");
        w.Dispose();
        Assert.That(call.Wait(DeadlockGuard), Is.True, "deadlock guard: the call did not finish");
        Assert.That(BitIdentical(actual, expected), Is.True, "the call that held the weights computed on freed memory");
        Assert.That(w.Memory.IsReleased, Is.True);
        Assert.Throws<ObjectDisposedException>(() => IntegerGemm.Linear(x, m, w, 8, [], new float[m * BigN], 1.0, options));
    }

    // ---- (a) dispose a tensor argument while a call holds it ------------------------------------

    [Test]
    public void DisposingATensorArgumentDuringACallLetsItFinish([Values("x", "bias", "Shift", "Scale", "Residual", "Gate")] string argument)
    {
        var options = Options(NativeKernels.IsAvailable ? "native" : "managed");
        const int samples = 2, tokens = 512, k = BigK, n = 256;  // x: 32 MiB
        var gen = new Generator(9);
        using var w = RandomWeights(n, k, 10);
        var tensors = new Dictionary<string, Tensor>
        {
            ["x"] = torch.randn([samples, tokens, k], generator: gen),
            ["bias"] = torch.randn([n], generator: gen),
            ["Shift"] = torch.randn([samples, k], generator: gen),
            ["Scale"] = torch.randn([samples, k], generator: gen).mul_(0.1),
            ["Residual"] = torch.randn([samples, tokens, n], generator: gen),
            ["Gate"] = torch.randn([samples, n], generator: gen),
        };
        try
        {
            var ops = new FusedLinearOps
            {
                LayerNorm = true, Shift = tensors["Shift"], Scale = tensors["Scale"],
                Activation = FusedActivation.GeluTanh, Residual = tensors["Residual"], Gate = tensors["Gate"],
            };
            Tensor Call() => TorchIntegerGemm.Linear(tensors["x"], w, 8, tensors["bias"], 1.0, options, ops);
            float[] expected;
            using (var y0 = Call()) expected = y0.data<float>().ToArray();

            var victim = tensors[argument];
            long bytes = victim.numel() * sizeof(float);
            using var entered = new ManualResetEventSlim();
            using var proceed = new ManualResetEventSlim();
            w.LeaseTakenHook = () => { entered.Set(); Wait(proceed, "the test thread's dispose"); };
            var call = Task.Run(Call);
            Wait(entered, "the call");
            Tensor? garbage = null;
            try
            {
                victim.Dispose();
                garbage = Scribble(bytes);
            }
            finally
            {
                proceed.Set();
            }
            try
            {
                Assert.That(call.Wait(DeadlockGuard), Is.True, "deadlock guard: the call did not finish");
                using var y = call.Result;
                Assert.That(BitIdentical(y.data<float>().ToArray(), expected), Is.True, $"the call read {argument} after it was freed");
            }
            finally
            {
                garbage?.Dispose();
            }
            w.LeaseTakenHook = null;
            var e = Assert.Throws<ObjectDisposedException>(() => Call().Dispose())!;
            Assert.That(e.ObjectName, Is.EqualTo(argument));
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    // ---- (b) a disposed tensor argument gives a typed error naming it ---------------------------

    private static Tensor Disposed(Tensor t)
    {
        t.Dispose();
        return t;
    }

    [Test]
    public void DisposedTensorArgumentsAreRefusedByName()
    {
        using var scope = torch.NewDisposeScope();
        using var w = RandomWeights(4, 8, 1);
        using var x = torch.zeros(2, 8);
        using var bias = torch.zeros(4);
        using var mod = torch.zeros(1, 8);
        using var res = torch.zeros(2, 4);
        using var gate = torch.zeros(1, 4);
        void Refused(string name, TestDelegate call)
        {
            var e = Assert.Throws<ObjectDisposedException>(call, name)!;
            Assert.That(e.ObjectName, Is.EqualTo(name));
            Assert.That(e.Message, Does.Contain($"{name}: the tensor has been disposed"));
        }

        Refused("x", () => TorchIntegerGemm.Linear(Disposed(torch.zeros(2, 8)), w, 8));
        Refused("bias", () => TorchIntegerGemm.Linear(x, w, 8, Disposed(torch.zeros(4))));
        Refused("Shift", () => TorchIntegerGemm.Linear(x, w, 8, ops: new FusedLinearOps { LayerNorm = true, Shift = Disposed(torch.zeros(1, 8)) }));
        Refused("Scale", () => TorchIntegerGemm.Linear(x, w, 8, ops: new FusedLinearOps { LayerNorm = true, Shift = mod, Scale = Disposed(torch.zeros(1, 8)) }));
        Refused("Residual", () => TorchIntegerGemm.Linear(x, w, 8, ops: new FusedLinearOps { Residual = Disposed(torch.zeros(2, 4)) }));
        Refused("Gate", () => TorchIntegerGemm.Linear(x, w, 8, ops: new FusedLinearOps { Residual = res, Gate = Disposed(torch.zeros(1, 4)) }));
        Refused("x", () => TorchIntegerGemm.QuantizeActivations(Disposed(torch.zeros(2, 8)), 8));
        Refused("x", () => TorchIntegerGemm.LayerNormModulate(Disposed(torch.zeros(2, 8)), new FusedLinearOps { LayerNorm = true }));
        Refused("y", () => TorchIntegerGemm.ApplyEpilogue(Disposed(torch.zeros(2, 4)), new FusedLinearOps { Activation = FusedActivation.GeluTanh }));
        Refused("codes", () => TorchIntegerGemm.PackWeights(Disposed(torch.zeros(new long[] { 4, 8 }, ScalarType.Int8)), torch.ones(4), 8, 8));
        Refused("scales", () => TorchIntegerGemm.PackWeights(torch.zeros(new long[] { 4, 8 }, ScalarType.Int8), Disposed(torch.ones(4)), 8, 8));
        // The CUDA entry points check for disposal first, so this runs without a device too.
        Refused("x", () => CudaIntegerGemm.QuantizeActivations(Disposed(torch.zeros(2, 8))));
        Refused("activationCodes", () => CudaIntegerGemm.Gemm(Disposed(torch.zeros(2, 8)), x, x, x, 8));
        Refused("x", () => CudaIntegerGemm.Linear(Disposed(torch.zeros(2, 8)), x, x, 8));
        // The same tensors, alive, pass these checks.
        Assert.DoesNotThrow(() => TorchIntegerGemm.Linear(x, w, 8, bias, ops: new FusedLinearOps { LayerNorm = true, Shift = mod, Scale = mod, Residual = res, Gate = gate }).Dispose());
    }

    // ---- (c) the reference count on the packed memory -------------------------------------------

    [Test]
    public void DisposeWhileALeaseIsHeldFreesTheMemoryWhenTheLastLeaseEnds()
    {
        var w = RandomWeights(48, 64, 2);
        nint codes = w.Memory.DangerousGetHandle();
        byte first = Marshal.ReadByte(codes);
        var lease1 = w.Acquire();
        var lease2 = w.Acquire();
        w.Dispose();
        Assert.That(w.IsDisposed, Is.True);
        Assert.That(w.Memory.IsReleased, Is.False, "freed while two calls hold the memory");
        Assert.That(Marshal.ReadByte(codes), Is.EqualTo(first), "the memory is still readable");
        var e = Assert.Throws<ObjectDisposedException>(() => { using var late = w.Acquire(); })!;
        Assert.That(e.ObjectName, Is.EqualTo("weights"));
        lease1.Dispose();
        Assert.That(w.Memory.IsReleased, Is.False, "freed while one call still holds the memory");
        lease2.Dispose();
        Assert.That(w.Memory.IsReleased, Is.True, "not freed after the last call");
        Assert.That(w.Memory.IsClosed, Is.True);
        w.Dispose();  // idempotent
        Assert.Throws<ObjectDisposedException>(() => IntegerGemm.Int32(new sbyte[64], 1, w, new int[48]));
    }

    [Test]
    public void DisposeWithoutCallsFreesAtOnce()
    {
        var w = RandomWeights(4, 8, 3);
        using (w.Acquire()) { }
        Assert.That(w.Memory.IsReleased, Is.False);
        w.Dispose();
        Assert.That(w.Memory.IsReleased, Is.True);
    }

    [Test]
    public void AFailingCallReleasesItsReference()
    {
        // A call that throws after taking its reference (here: the hook) must not keep the memory alive.
        var w = RandomWeights(4, 8, 4);
        w.LeaseTakenHook = () => throw new InvalidOperationException("hook");
        Assert.Throws<InvalidOperationException>(() => IntegerGemm.Gemm(new sbyte[8], [1f], 1, w, [], new float[4], new KernelOptions { Isa = KernelIsa.Managed }));
        w.Dispose();
        Assert.That(w.Memory.IsReleased, Is.True);
    }

    // ---- data pointers: TorchSharp's public API only ---------------------------------------------

    [Test]
    public void TensorAddressesMatchTorchSharpsOwnSpanForEveryDtype()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var dtype in new[] { ScalarType.Int8, ScalarType.Byte, ScalarType.Float32 })
        {
            var t = torch.arange(24, dtype: dtype).reshape(4, 6);
            var row = t[2];  // storage offset 12 elements
            nint address = TensorMemory.Address(row);
            Assert.That(address - TensorMemory.Address(t), Is.EqualTo((nint)(12 * t.ElementSize)), $"{dtype}");
            Marshal.WriteByte(address, 99);  // the address is the tensor's own memory, not a copy's
            Assert.That(row.bytes[0], Is.EqualTo((byte)99), $"{dtype}");
            Assert.That(t.bytes[(int)(12 * t.ElementSize)], Is.EqualTo((byte)99), $"{dtype}");
            using (var pin = PinnedTensor.Take(row, "row"))
                Assert.That(pin.Address, Is.EqualTo(address), $"{dtype}: the alias must share the storage, not copy it");
        }
        Assert.That(TensorMemory.Address(torch.empty(0, 5)), Is.EqualTo((nint)0));
    }

    [Test]
    public void NothingIsImportedFromTorchSharpsNativeLibrary()
    {
        // P/Invoke stubs (including the ones [LibraryImport] generates) carry DllImportAttribute.
        var imports = typeof(IntegerGemm).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Select(m => (Method: m, Import: m.GetCustomAttribute<DllImportAttribute>()))
            .Where(p => p.Import is not null)
            .ToList();
        Assert.That(imports, Is.Not.Empty);
        var libraries = imports.Select(p => p.Import!.Value).Distinct().ToList();
        Assert.That(libraries, Is.SubsetOf(new[] { "adatsq_kernels", "adatsq_kernels_cuda" }),
            "imports: " + string.Join(", ", imports.Select(p => $"{p.Import!.Value}!{p.Import.EntryPoint}")));
    }
}
