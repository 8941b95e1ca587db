using System.Runtime.InteropServices;
using AdaTSQ.Kernels;
using AdaTSQ.Kernels.Interop;

namespace AdaTSQ.Tests.Kernels;

/// <summary>
/// The C ABI refuses bad arguments itself, before any work: a status (a <see cref="KernelException"/>
/// on the managed side) and a message from <c>adatsq_last_error</c> naming the check, never a hang or
/// a crash. The k loops of the assembly paths count the steps of a group down with dec / jnz (two at a
/// time for 4-bit weights), so a group of 0 k4 steps, or an odd count for 4-bit weights, would loop
/// about 2^64 times: such groups are the first cases here, on every native path the CPU has. The
/// managed API checks its arguments before any native call, so these tests call the entry points
/// directly, with structs that mirror (and are checked against) the interop structs.
/// </summary>
[NonParallelizable]
public class NativeArgumentCheckTests
{
    private const string Lib = NativeMethods.Library;

    /// <summary>adatsq_gemm_args with IntPtr fields (blittable; its layout is checked against <see cref="GemmArgs"/>).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Args
    {
        public IntPtr A;
        public long Lda;
        public IntPtr B;
        public IntPtr ColSum;
        public IntPtr WeightScale;
        public IntPtr ActivationScale;
        public IntPtr Bias;
        public IntPtr C;
        public long Ldc;
        public long M, N, K;
        public long PaddedN;
        public long Group;
        public long Groups;
        public int WeightBits;
        public int OutInt32;
        public int Threads;
        public int Isa;
        public long ActivationGroup;
        public long LdActivationScale;
    }

    /// <summary>adatsq_linear_ops with IntPtr fields (layout checked against <see cref="LinearOps"/>).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Ops
    {
        public int LayerNorm;
        public float Eps;
        public IntPtr Shift;
        public IntPtr Scale;
        public long LdMod;
        public long RowsPerSample;
        public int Activation;
        public IntPtr Residual;
        public long LdResidual;
        public IntPtr Gate;
        public long LdGate;
        public IntPtr InputScale;
        public long Rank;
        public IntPtr LowRankDown;
        public long LdDown;
        public IntPtr LowRankUp;
        public long LdUp;
        public long RotBlock;
        public long RotOrder;
        public IntPtr RotHm;
        public IntPtr RotSigns;
        public float RotDivisor;
    }

    [DllImport(Lib, EntryPoint = "adatsq_gemm")]
    private static extern NativeStatus Gemm(ref Args args);

    [DllImport(Lib, EntryPoint = "adatsq_gemm")]
    private static extern NativeStatus GemmNullArgs(IntPtr args);

    [DllImport(Lib, EntryPoint = "adatsq_linear_ex")]
    private static extern NativeStatus LinearEx(ref Args args, IntPtr x, long ldx, int abits, float clip, ref Ops ops);

    [DllImport(Lib, EntryPoint = "adatsq_linear")]
    private static extern NativeStatus Linear(ref Args args, IntPtr x, long ldx, int abits, float clip);

    [DllImport(Lib, EntryPoint = "adatsq_quantize_rows")]
    private static extern NativeStatus QuantizeRows(int isa, IntPtr x, long m, long k, long ldx, int bits, float clip, IntPtr q, long ldq, IntPtr scale, int threads);

    [DllImport(Lib, EntryPoint = "adatsq_layernorm_modulate")]
    private static extern NativeStatus LayerNormModulate(int isa, IntPtr x, long m, long k, long ldx, ref Ops ops, IntPtr output, long ldo, int threads);

    [DllImport(Lib, EntryPoint = "adatsq_apply_epilogue")]
    private static extern NativeStatus ApplyEpilogue(int isa, IntPtr c, long m, long n, long ldc, ref Ops ops, int threads);

    [DllImport(Lib, EntryPoint = "adatsq_vnni_peak")]
    private static extern NativeStatus VnniPeak(int isa, long iterations, int threads, out double seconds, out double ops);

    [DllImport(Lib, EntryPoint = "adatsq_last_error")]
    private static extern IntPtr LastErrorPtr();

    private static string LastError => Marshal.PtrToStringUTF8(LastErrorPtr()) ?? "";

    // The shape of the valid calls: M x K activations, N outputs, K = 10 (not a multiple of 4 or 8).
    private const int M = 3, N = 5, K = 10;

    /// <summary>Pinned buffers, larger than any call below reads or writes, and valid arguments over them.</summary>
    private sealed class Buffers : IDisposable
    {
        private readonly List<GCHandle> _handles = [];
        public readonly float[] Bias = Enumerable.Range(1, 64).Select(i => (float)i).ToArray();
        public readonly float[] COut = new float[4096];
        public IntPtr A, B, ColSum, WeightScale, ActivationScale, BiasPtr, C, X, Q, QScale, Residual, Gate, Shift;

        public Buffers()
        {
            A = Pin(new sbyte[4096]);
            B = Pin(new byte[16384]);                       // zero weights: C = bias exactly
            ColSum = Pin(new int[1024]);
            WeightScale = Pin(Enumerable.Repeat(1f, 1024).ToArray());
            ActivationScale = Pin(Enumerable.Repeat(1f, 64).ToArray());
            BiasPtr = Pin(Bias);
            C = Pin(COut);
            X = Pin(Enumerable.Range(0, 4096).Select(i => (float)Math.Sin(i)).ToArray());
            Q = Pin(new sbyte[4096]);
            QScale = Pin(new float[64]);
            Residual = Pin(new float[4096]);
            Gate = Pin(new float[4096]);
            Shift = Pin(new float[4096]);
        }

        private IntPtr Pin(Array array)
        {
            var h = GCHandle.Alloc(array, GCHandleType.Pinned);
            _handles.Add(h);
            return h.AddrOfPinnedObject();
        }

        /// <summary>A valid GEMM: weights of <paramref name="bits"/> bits, per channel (group = K rounded up) or in groups.</summary>
        public Args Gemm(KernelIsa isa, int bits = 8, int group = 0)
        {
            int unit = bits == 4 ? 8 : 4;
            int g = group > 0 ? group : (K + unit - 1) / unit * unit;
            return new Args
            {
                A = A, Lda = K, B = B, ColSum = ColSum, WeightScale = WeightScale, ActivationScale = ActivationScale, Bias = BiasPtr,
                C = C, Ldc = N, M = M, N = N, K = K, PaddedN = 48, Group = g, Groups = (K + g - 1) / g,
                WeightBits = bits, OutInt32 = 0, Threads = 2, Isa = (int)isa,
            };
        }

        public Ops FusedOps() => new()
        {
            LayerNorm = 1, Eps = 1e-6f, Shift = Shift, Scale = Shift, LdMod = K, RowsPerSample = 1,
            Activation = 1, Residual = Residual, LdResidual = N, Gate = Gate, LdGate = N,
        };

        /// <summary>FusedOps with an input scale, a rotation (block 2, order 5) and a rank-2 low-rank branch (down [2, K], up [N, 2]).</summary>
        public Ops FusedOpsWithBranch() => FusedOps() with
        {
            InputScale = WeightScale, Rank = 2, LowRankDown = Shift, LdDown = K, LowRankUp = Shift, LdUp = 2,
            RotBlock = 2, RotOrder = K / 2, RotHm = WeightScale, RotSigns = WeightScale, RotDivisor = 3.1622777f,  // H_5 ⊗ H_2 shape (values: ones)
        };

        public void Dispose()
        {
            foreach (var h in _handles) h.Free();
        }
    }

    /// <summary>The native ISA the cases run on: the best one (the assembly k loops where the CPU has VNNI).</summary>
    private static KernelIsa BestNativeIsa()
    {
        NativeTestSupport.RequireNativeLibrary();
        return NativeKernels.BestIsa;
    }

    /// <summary>A refused call: the expected status, a typed exception from the managed status check, and the message.</summary>
    private static void AssertRefused(NativeStatus status, string messageFragment, NativeStatus expected = NativeStatus.BadArgument)
    {
        string message = LastError;
        Assert.That(status, Is.EqualTo(expected), $"native message: \"{message}\"");
        var thrown = Assert.Throws<KernelException>(() => NativeMethods.Check(status, "native call"));
        Assert.That(message, Does.Contain(messageFragment));
        // The managed exception carries the native check's message, so a user sees which argument was refused.
        Assert.That(thrown!.Message, Does.Contain(messageFragment));
    }

    private static readonly string[] NativePaths = ["avx512vnni", "avxvnni", "avx2", "scalar"];

    [Test]
    public void TheMirrorStructsHaveTheInteropLayout()
    {
        Assert.That(Marshal.SizeOf<Args>(), Is.EqualTo(Marshal.SizeOf<GemmArgs>()));
        foreach (var f in typeof(Args).GetFields())
            Assert.That(Marshal.OffsetOf<Args>(f.Name), Is.EqualTo(Marshal.OffsetOf<GemmArgs>(f.Name)), f.Name);
        Assert.That(Marshal.SizeOf<Ops>(), Is.EqualTo(Marshal.SizeOf<LinearOps>()));
        foreach (var f in typeof(Ops).GetFields())
            Assert.That(Marshal.OffsetOf<Ops>(f.Name), Is.EqualTo(Marshal.OffsetOf<LinearOps>(f.Name)), f.Name);
    }

    [Test]
    public void ValidCallsSucceedOnEveryPath([ValueSource(nameof(NativePaths))] string path, [Values(8, 4)] int bits, [Values(0, 16)] int group)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        using var buf = new Buffers();
        var args = buf.Gemm(isa, bits, group);
        var expected = Enumerable.Range(0, M * N).Select(i => buf.Bias[i % N]).ToArray();
        Array.Fill(buf.COut, float.NaN);
        Assert.That(Gemm(ref args), Is.EqualTo(NativeStatus.Ok), LastError);
        Assert.That(LastError, Is.Empty);
        Assert.That(buf.COut.Take(M * N), Is.EqualTo(expected), "zero weights: C = bias");
        Array.Fill(buf.COut, float.NaN);
        Assert.That(Linear(ref args, buf.X, K, 8, 1f), Is.EqualTo(NativeStatus.Ok), LastError);
        Assert.That(buf.COut.Take(M * N), Is.EqualTo(expected), "zero weights: C = bias");
        var ops = buf.FusedOps();
        Assert.That(LinearEx(ref args, buf.X, K, 8, 1f, ref ops), Is.EqualTo(NativeStatus.Ok), LastError);
    }

    // Groups whose k loops would have 0 steps, or an odd count for 4-bit weights (the loop takes two
    // per trip and would step over zero): (bits, group, groups, what the message names).
    public static readonly (int Bits, long Group, long Groups, string Message)[] EndlessLoopGroups =
    [
        (8, 0, 1, "group = 0"),
        (8, 2, 5, "group = 2: must be a positive multiple of 4"),
        (8, -4, 1, "group = -4"),
        (4, 4, 3, "group = 4: must be a positive multiple of 8"),
        (4, 12, 1, "group = 12: must be a positive multiple of 8"),
        (8, 4, 0, "groups = 0"),
    ];

    [Test]
    public void GroupsThatWouldStartAnEndlessKLoopAreRefusedOnEveryPath([ValueSource(nameof(NativePaths))] string path,
                                                                       [ValueSource(nameof(EndlessLoopGroups))] (int Bits, long Group, long Groups, string Message) bad)
    {
        var (bits, size, count, message) = bad;
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        using var buf = new Buffers();
        var args = buf.Gemm(isa, bits) with { Group = size, Groups = count };
        AssertRefused(Gemm(ref args), message);
        AssertRefused(Linear(ref args, buf.X, K, 8, 1f), message);
        var int32 = args with { OutInt32 = 1 };
        AssertRefused(Gemm(ref int32), message);
    }

    // Each case breaks one argument of an otherwise valid adatsq_gemm call.
    public static IEnumerable<TestCaseData> BadGemmArguments()
    {
        TestCaseData Case(string name, Func<Args, Args> bad, string message, NativeStatus status = NativeStatus.BadArgument) =>
            new TestCaseData(bad, message, (int)status).SetArgDisplayNames(name);
        yield return Case("k = 0", a => a with { K = 0 }, "m, n and k must be positive");
        yield return Case("k < 0", a => a with { K = -8 }, "m, n and k must be positive");
        yield return Case("m = 0", a => a with { M = 0 }, "m, n and k must be positive");
        yield return Case("n < 0", a => a with { N = -1 }, "m, n and k must be positive");
        yield return Case("lda < k", a => a with { Lda = K - 1 }, "lda = 9 is less than k = 10");
        yield return Case("ldc < n", a => a with { Ldc = N - 1 }, "ldc = 4 is less than n = 5");
        yield return Case("np not n rounded up", a => a with { PaddedN = 96 }, "np = 96");
        yield return Case("np for another n", a => a with { N = 49, Ldc = 49 }, "np = 48");
        yield return Case("wbits = 5", a => a with { WeightBits = 5 }, "wbits = 5");
        yield return Case("out_int32 = 2", a => a with { OutInt32 = 2 }, "out_int32 = 2");
        yield return Case("threads = 0", a => a with { Threads = 0 }, "threads = 0");
        yield return Case("groups too few for k", a => a with { Group = 4, Groups = 2 }, "groups = 2: k = 10 in groups of 4 needs ceil(k / group) = 3");
        yield return Case("an empty group", a => a with { Group = 4, Groups = 4 }, "groups = 4");
        yield return Case("out_int32 with groups", a => a with { Group = 4, Groups = 3, OutInt32 = 1 }, "out_int32 needs per-channel weights");
        yield return Case("a = NULL", a => a with { A = IntPtr.Zero }, "args->a");
        yield return Case("b = NULL", a => a with { B = IntPtr.Zero }, "args->b");
        yield return Case("colsum = NULL", a => a with { ColSum = IntPtr.Zero }, "args->colsum");
        yield return Case("sb = NULL", a => a with { WeightScale = IntPtr.Zero }, "args->sb");
        yield return Case("sa = NULL", a => a with { ActivationScale = IntPtr.Zero }, "args->sa");
        yield return Case("c = NULL", a => a with { C = IntPtr.Zero }, "args->c");
        yield return Case("m * lda overflows", a => a with { M = long.MaxValue / 8, Lda = 16 }, "overflow");
        yield return Case("k near 2^62: offsets overflow", a => a with { K = long.MaxValue / 2, Lda = long.MaxValue / 2, Group = long.MaxValue / 4 / 4 * 4, Groups = 3 }, "overflow");
        yield return Case("isa unknown", a => a with { Isa = 99 }, "isa 99", NativeStatus.IsaUnavailable);
    }

    [TestCaseSource(nameof(BadGemmArguments))]
    public void BadGemmArgumentsAreRefused(Func<Args, Args> bad, string message, int status)
    {
        using var buf = new Buffers();
        var args = bad(buf.Gemm(BestNativeIsa()));
        AssertRefused(Gemm(ref args), message, (NativeStatus)status);
    }

    [Test]
    public void NullArgsAreRefused()
    {
        BestNativeIsa();
        AssertRefused(GemmNullArgs(IntPtr.Zero), "args is NULL");
    }

    // Each case breaks one argument of an otherwise valid adatsq_linear_ex call (x, ldx, abits, clip, ops).
    public static IEnumerable<TestCaseData> BadLinearArguments()
    {
        TestCaseData Case(string name, Func<Args, Args> args, Func<(long Ldx, int Bits, float Clip, bool NullX), (long, int, float, bool)> call,
                          Func<Ops, Ops> ops, string message) =>
            new TestCaseData(args, call, ops, message).SetArgDisplayNames(name);
        static Args Same(Args a) => a;
        static (long, int, float, bool) Call((long Ldx, int Bits, float Clip, bool NullX) c) => c;
        static Ops Keep(Ops o) => o;
        yield return Case("x = NULL", Same, c => c with { NullX = true }, Keep, "x is NULL");
        yield return Case("ldx < k", Same, c => c with { Ldx = K - 1 }, Keep, "ldx = 9 is less than k = 10");
        yield return Case("abits = 1", Same, c => c with { Bits = 1 }, Keep, "abits = 1");
        yield return Case("abits = 9", Same, c => c with { Bits = 9 }, Keep, "abits = 9");
        yield return Case("clip = 0", Same, c => c with { Clip = 0f }, Keep, "clip = 0");
        yield return Case("clip = 1.5", Same, c => c with { Clip = 1.5f }, Keep, "clip = 1.5");
        yield return Case("clip = NaN", Same, c => c with { Clip = float.NaN }, Keep, "nan: must be in (0, 1]");
        yield return Case("out_int32", a => a with { OutInt32 = 1 }, Call, Keep, "out_int32 is not available");
        yield return Case("zero-step group", a => a with { Group = 2, Groups = 5 }, Call, Keep, "group = 2");
        yield return Case("layer_norm = 2", Same, Call, o => o with { LayerNorm = 2 }, "ops->layer_norm = 2");
        yield return Case("eps = 0", Same, Call, o => o with { Eps = 0f }, "ops->eps = 0");
        yield return Case("shift without LayerNorm", Same, Call, o => o with { LayerNorm = 0 }, "need ops->layer_norm");
        yield return Case("ld_mod < k", Same, Call, o => o with { LdMod = K - 1 }, "ops->ld_mod = 9 is less than k = 10");
        yield return Case("rows_per_sample = 0", Same, Call, o => o with { RowsPerSample = 0 }, "ops->rows_per_sample = 0");
        yield return Case("activation = 7", Same, Call, o => o with { Activation = 7 }, "ops->activation = 7");
        yield return Case("ld_residual < n", Same, Call, o => o with { LdResidual = N - 1 }, "ops->ld_residual = 4 is less than n = 5");
        yield return Case("gate without residual", Same, Call, o => o with { Residual = IntPtr.Zero }, "ops->gate needs ops->residual");
        yield return Case("ld_gate < n", Same, Call, o => o with { LdGate = N - 1 }, "ops->ld_gate = 4 is less than n = 5");
        yield return Case("ld_mod overflows", Same, Call, o => o with { LdMod = long.MaxValue / 2 }, "ops->ld_mod");
        // ABI 5: the low-rank branch (the valid form is FusedOpsWithBranch: rank 2, down [2, K], up [N, 2]).
        yield return Case("rank = -1", Same, Call, o => o with { Rank = -1, LowRankDown = IntPtr.Zero, LowRankUp = IntPtr.Zero }, "ops->rank = -1: must be 0");
        yield return Case("rank above the bound", Same, Call, o => o with { Rank = 1025, LdUp = 1025 }, "ops->rank = 1025: must be 0 (no low-rank branch) to 1024");
        yield return Case("rank with lr_down = NULL", Same, Call, o => o with { LowRankDown = IntPtr.Zero }, "ops->rank = 2 needs ops->lr_down");
        yield return Case("rank with lr_up = NULL", Same, Call, o => o with { LowRankUp = IntPtr.Zero }, "ops->rank = 2 needs ops->lr_down [rank, K] and ops->lr_up");
        yield return Case("factors with rank 0", Same, Call, o => o with { Rank = 0 }, "ops->lr_down / ops->lr_up are set but ops->rank is 0");
        yield return Case("ld_down < k", Same, Call, o => o with { LdDown = K - 1 }, "ops->ld_down = 9 is less than k = 10");
        yield return Case("ld_up < rank", Same, Call, o => o with { LdUp = 1 }, "ops->ld_up = 1 is less than rank = 2");
        yield return Case("rot_block = -2", Same, Call, o => o with { RotBlock = -2 }, "ops->rot_block = -2: must be 0");
        yield return Case("rot_block not a power of two", Same, Call, o => o with { RotBlock = 5, RotOrder = 1, RotHm = IntPtr.Zero }, "ops->rot_block = 5: must be a power of two dividing k = 10");
        yield return Case("rot_block not dividing k", Same, Call, o => o with { RotBlock = 4, RotOrder = 1, RotHm = IntPtr.Zero }, "ops->rot_block = 4: must be a power of two dividing k = 10");
        yield return Case("rot_order wrong", Same, Call, o => o with { RotOrder = 3 }, "ops->rot_order = 3: must be 1 or k / rot_block = 5");
        yield return Case("rot_order > 1 without rot_hm", Same, Call, o => o with { RotHm = IntPtr.Zero }, "ops->rot_hm must be set exactly when ops->rot_order > 1");
        yield return Case("rot_hm with rot_order 1", Same, Call, o => o with { RotOrder = 1 }, "ops->rot_hm must be set exactly when ops->rot_order > 1");
        yield return Case("rot_divisor = 0", Same, Call, o => o with { RotDivisor = 0f }, "ops->rot_divisor = 0");
        yield return Case("rot_divisor = inf", Same, Call, o => o with { RotDivisor = float.PositiveInfinity }, "ops->rot_divisor = inf");
        yield return Case("rot_signs without rot_block", Same, Call, o => o with { RotBlock = 0 }, "ops->rot_hm / ops->rot_signs are set but ops->rot_block is 0");
        yield return Case("ld_down overflows", Same, Call, o => o with { LdDown = long.MaxValue / 2 + 1 }, "the low-rank branch overflows");
    }

    [TestCaseSource(nameof(BadLinearArguments))]
    public void BadLinearArgumentsAreRefused(Func<Args, Args> args, Func<(long Ldx, int Bits, float Clip, bool NullX), (long Ldx, int Bits, float Clip, bool NullX)> call,
                                             Func<Ops, Ops> ops, string message)
    {
        using var buf = new Buffers();
        var a = args(buf.Gemm(BestNativeIsa()));
        var c = call((K, 8, 1f, false));
        var o = ops(buf.FusedOpsWithBranch());
        AssertRefused(LinearEx(ref a, c.NullX ? IntPtr.Zero : buf.X, c.Ldx, c.Bits, c.Clip, ref o), message);
    }

    [Test]
    public void TheInputScaleAndTheBranchAreTakenByTheLinearCallOnly([ValueSource(nameof(NativePaths))] string path)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        using var buf = new Buffers();
        var args = buf.Gemm(isa);
        var ops = buf.FusedOpsWithBranch();
        Assert.That(LinearEx(ref args, buf.X, K, 8, 1f, ref ops), Is.EqualTo(NativeStatus.Ok), $"the valid call: {LastError}");
        // The prologue call runs the input scale and the rotation (prologue work), not the branch.
        var prologue = buf.FusedOpsWithBranch() with { Rank = 0, LowRankDown = IntPtr.Zero, LowRankUp = IntPtr.Zero };
        Assert.That(LayerNormModulate((int)isa, buf.X, M, K, K, ref prologue, buf.C, K, 1), Is.EqualTo(NativeStatus.Ok), $"the valid prologue call: {LastError}");
        var branch = buf.FusedOpsWithBranch();
        AssertRefused(LayerNormModulate((int)isa, buf.X, M, K, K, ref branch, buf.C, K, 1), "taken by adatsq_linear_ex only");
        var epilogue = buf.FusedOps() with { LayerNorm = 0, Shift = IntPtr.Zero, Scale = IntPtr.Zero };
        var withScale = epilogue with { InputScale = buf.Shift };
        AssertRefused(ApplyEpilogue((int)isa, buf.C, M, N, N, ref withScale, 1), "prologue work");
        var withRotation = epilogue with { RotBlock = 2, RotOrder = 1, RotDivisor = 1f };
        AssertRefused(ApplyEpilogue((int)isa, buf.C, M, N, N, ref withRotation, 1), "prologue work");
        var withBranch = epilogue with { Rank = 2, LowRankDown = buf.Shift, LdDown = K, LowRankUp = buf.Shift, LdUp = 2 };
        AssertRefused(ApplyEpilogue((int)isa, buf.C, M, N, N, ref withBranch, 1), "taken by adatsq_linear_ex only");
    }

    [Test]
    public void BadQuantizeRowsArgumentsAreRefused()
    {
        int isa = (int)BestNativeIsa();
        using var buf = new Buffers();
        AssertRefused(QuantizeRows(isa, buf.X, M, 0, K, 8, 1f, buf.Q, K, buf.QScale, 1), "m and k must be positive");
        AssertRefused(QuantizeRows(isa, buf.X, 0, K, K, 8, 1f, buf.Q, K, buf.QScale, 1), "m and k must be positive");
        AssertRefused(QuantizeRows(isa, buf.X, M, K, K - 1, 8, 1f, buf.Q, K, buf.QScale, 1), "ldx = 9");
        AssertRefused(QuantizeRows(isa, buf.X, M, K, K, 8, 1f, buf.Q, K - 1, buf.QScale, 1), "ldq = 9");
        AssertRefused(QuantizeRows(isa, buf.X, M, K, K, 1, 1f, buf.Q, K, buf.QScale, 1), "bits = 1");
        AssertRefused(QuantizeRows(isa, buf.X, M, K, K, 8, 0f, buf.Q, K, buf.QScale, 1), "clip = 0");
        AssertRefused(QuantizeRows(isa, IntPtr.Zero, M, K, K, 8, 1f, buf.Q, K, buf.QScale, 1), "must not be NULL");
        AssertRefused(QuantizeRows(isa, buf.X, M, K, K, 8, 1f, buf.Q, K, buf.QScale, 0), "threads = 0");
        AssertRefused(QuantizeRows(isa, buf.X, long.MaxValue / 4, K, 64, 8, 1f, buf.Q, K, buf.QScale, 1), "overflow");
        AssertRefused(QuantizeRows(99, buf.X, M, K, K, 8, 1f, buf.Q, K, buf.QScale, 1), "isa 99", NativeStatus.IsaUnavailable);
        Assert.That(QuantizeRows(isa, buf.X, M, K, K, 8, 1f, buf.Q, K, buf.QScale, 1), Is.EqualTo(NativeStatus.Ok), "the valid call");
    }

    [Test]
    public void BadPrologueAndEpilogueArgumentsAreRefused()
    {
        int isa = (int)BestNativeIsa();
        using var buf = new Buffers();
        var ops = buf.FusedOps();
        AssertRefused(LayerNormModulate(isa, buf.X, M, 0, K, ref ops, buf.C, K, 1), "m and k must be positive");
        AssertRefused(LayerNormModulate(isa, buf.X, M, K, K, ref ops, buf.C, K - 1, 1), "ldo = 9");
        AssertRefused(LayerNormModulate(isa, buf.X, M, K, K, ref ops, IntPtr.Zero, K, 1), "must not be NULL");
        AssertRefused(LayerNormModulate(isa, buf.X, M, K, K, ref ops, buf.C, K, 0), "threads = 0");
        var noLayerNorm = ops with { LayerNorm = 0, Shift = IntPtr.Zero, Scale = IntPtr.Zero };
        AssertRefused(LayerNormModulate(isa, buf.X, M, K, K, ref noLayerNorm, buf.C, K, 1), "ops has no prologue");
        Assert.That(LayerNormModulate(isa, buf.X, M, K, K, ref ops, buf.C, K, 1), Is.EqualTo(NativeStatus.Ok), "the valid call");

        AssertRefused(ApplyEpilogue(isa, buf.C, M, 0, N, ref ops, 1), "m and n must be positive");
        AssertRefused(ApplyEpilogue(isa, buf.C, M, N, N - 1, ref ops, 1), "ldc = 4 is less than n = 5");
        AssertRefused(ApplyEpilogue(isa, IntPtr.Zero, M, N, N, ref ops, 1), "must not be NULL");
        var badGate = ops with { LdGate = 1 };
        AssertRefused(ApplyEpilogue(isa, buf.C, M, N, N, ref badGate, 1), "ops->ld_gate = 1");
        Assert.That(ApplyEpilogue(isa, buf.C, M, N, N, ref ops, 1), Is.EqualTo(NativeStatus.Ok), "the valid call");
    }

    // The peak loops count their iterations down with dec / jnz: 0 would loop about 2^64 times.
    // The arguments are checked before the ISA, so this runs on any CPU.
    [Test]
    public void TheVnniPeakLoopRefusesZeroIterations([Values(KernelIsa.Avx512Vnni, KernelIsa.AvxVnni)] KernelIsa isa)
    {
        NativeTestSupport.RequireNativeLibrary();
        AssertRefused(VnniPeak((int)isa, 0, 1, out _, out _), "iterations = 0");
        AssertRefused(VnniPeak((int)isa, -5, 1, out _, out _), "iterations = -5");
        AssertRefused(VnniPeak((int)isa, 10, 0, out _, out _), "threads = 0");
        AssertRefused(VnniPeak((int)KernelIsa.Avx2, 10, 1, out _, out _), "the peak loop exists for the VNNI paths only", NativeStatus.IsaUnavailable);
    }

    [DllImport(Lib, EntryPoint = "adatsq_quantize_groups")]
    private static extern NativeStatus QuantizeGroups(int isa, IntPtr x, long m, long k, long ldx, int bits, float clip, long group, IntPtr q, long ldq,
        IntPtr scale, long ldScale, int threads);

    /// <summary>
    /// Per-group activation scales (ABI 4, <c>a_group</c> / <c>ldsa</c>): valid groups run (zero weights: C = bias), and
    /// every bad group is refused by the native check with a message, on every native path: a negative group, one that
    /// does not divide K, one that is not a multiple of the weights' kernel group, a too-small <c>ldsa</c>, and
    /// activation scales on the exact int32 product.
    /// </summary>
    [Test]
    public void ActivationGroupsAreCheckedOnEveryPath([ValueSource(nameof(NativePaths))] string path, [Values(8, 4)] int bits)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        using var buf = new Buffers();
        var valid = buf.Gemm(isa, bits, 8);
        valid.K = valid.Lda = 32;
        valid.Groups = 4;
        valid.ActivationGroup = 16;
        valid.LdActivationScale = 2;
        var expected = Enumerable.Range(0, M * N).Select(i => buf.Bias[i % N]).ToArray();
        foreach (var (aGroup, ld) in new[] { (8L, 4L), (16L, 2L), (32L, 1L), (16L, 7L) })
        {
            var args = valid;
            args.ActivationGroup = aGroup;
            args.LdActivationScale = ld;
            Array.Fill(buf.COut, float.NaN);
            Assert.That(Gemm(ref args), Is.EqualTo(NativeStatus.Ok), LastError);
            Assert.That(buf.COut.Take(M * N), Is.EqualTo(expected), $"a_group {aGroup}: zero weights, C = bias");
            Array.Fill(buf.COut, float.NaN);
            Assert.That(Linear(ref args, buf.X, 32, 4, 1f), Is.EqualTo(NativeStatus.Ok), LastError);
            Assert.That(buf.COut.Take(M * N), Is.EqualTo(expected), $"a_group {aGroup}, fused: C = bias");
            var ops = buf.FusedOps();
            ops.LdMod = 32;
            Assert.That(LinearEx(ref args, buf.X, 32, 4, 1f, ref ops), Is.EqualTo(NativeStatus.Ok), LastError);
        }
        var bad = valid;
        bad.ActivationGroup = -8;
        AssertRefused(Gemm(ref bad), "a_group = -8");
        bad.ActivationGroup = 12;
        AssertRefused(Gemm(ref bad), "a_group = 12 does not divide k = 32");
        AssertRefused(Linear(ref bad, buf.X, 32, 4, 1f), "a_group = 12 does not divide k = 32");
        bad.ActivationGroup = 4;
        AssertRefused(Gemm(ref bad), "is not a multiple of the weights' kernel group 8");
        AssertRefused(Linear(ref bad, buf.X, 32, 4, 1f), "is not a multiple of the weights' kernel group 8");
        bad.ActivationGroup = 16;
        bad.LdActivationScale = 1;
        AssertRefused(Gemm(ref bad), "ldsa = 1 is less than k / a_group = 2");
        var int32 = valid;
        int32.Group = 32;
        int32.Groups = 1;
        int32.OutInt32 = 1;
        int32.ActivationGroup = 32;
        AssertRefused(Gemm(ref int32), "out_int32 takes no activation scales");
    }

    [Test]
    public void GroupedQuantizationChecksItsGroup([ValueSource(nameof(NativePaths))] string path)
    {
        var isa = NativeKernels.ParseIsa(path);
        NativeTestSupport.RequireIsa(isa);
        using var buf = new Buffers();
        Assert.That(QuantizeGroups((int)isa, buf.X, M, K, K, 4, 1f, 5, buf.Q, K, buf.QScale, 2, 2), Is.EqualTo(NativeStatus.Ok), LastError);
        AssertRefused(QuantizeGroups((int)isa, buf.X, M, K, K, 4, 1f, 3, buf.Q, K, buf.QScale, 4, 2), "group = 3: must be positive and divide k = 10");
        AssertRefused(QuantizeGroups((int)isa, buf.X, M, K, K, 4, 1f, 0, buf.Q, K, buf.QScale, 4, 2), "group = 0");
        AssertRefused(QuantizeGroups((int)isa, buf.X, M, K, K, 4, 1f, 5, buf.Q, K, buf.QScale, 1, 2), "ld_scale = 1 is less than k / group = 2");
    }
}
