using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>The activation an integer linear call can apply to its output (<see cref="FusedLinearOps.Activation"/>).</summary>
public enum FusedActivation
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary>GELU with the tanh approximation, <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c> (torch's <c>approximate='tanh'</c>).</summary>
    GeluTanh = 1,
}

/// <summary>
/// The element-wise work around one linear layer that the integer kernels do inside the call,
/// the way DiT uses it: a <b>prologue</b> on the input rows before they are quantized —
/// <c>LayerNorm(x)·(1 + scale) + shift</c> (adaLN "modulate"; LayerNorm without affine
/// parameters, biased variance, as <c>torch.nn.LayerNorm</c>) — and an <b>epilogue</b> on the
/// output — the activation, then <c>residual + gate·y</c> (DiT's gated residual).
/// </summary>
/// <remarks>
/// <para>Per-sample tensors: <see cref="Shift"/>, <see cref="Scale"/> are <c>[samples, K]</c> and
/// <see cref="Gate"/> <c>[samples, N]</c>; the call's M rows are split evenly into the samples
/// (row i belongs to sample <c>i / (M / samples)</c>, i.e. x is <c>[samples, tokens, K]</c>).
/// All tensors are float32, contiguous and on the CPU, like the call's input.</para>
/// <para><see cref="ComposePrologue"/> and <see cref="ComposeEpilogue"/> are the same operations in
/// TorchSharp: the definition the fused call is tested against, and what callers run when the
/// integer kernels cannot take a call. Fused and composed results agree within float rounding
/// (the fused LayerNorm sums in another order, and the GELU uses its own exp), not bit for bit.</para>
/// </remarks>
public sealed class FusedLinearOps
{
    /// <summary>No fused work (a plain linear call).</summary>
    public static FusedLinearOps None { get; } = new();

    /// <summary>Apply the LayerNorm prologue (and the modulation, when <see cref="Shift"/> / <see cref="Scale"/> are set).</summary>
    public bool LayerNorm { get; init; }

    /// <summary>LayerNorm epsilon, added to the variance inside the square root. Default 1e-6 (DiT's).</summary>
    public double LayerNormEpsilon { get; init; } = 1e-6;

    /// <summary>Added after the LayerNorm, per sample: <c>[samples, K]</c>, or null. Needs <see cref="LayerNorm"/>.</summary>
    public Tensor? Shift { get; init; }

    /// <summary>Multiplies the LayerNorm output by <c>1 + scale</c>, per sample: <c>[samples, K]</c>, or null. Needs <see cref="LayerNorm"/>.</summary>
    public Tensor? Scale { get; init; }

    /// <summary>Activation applied to the output (after the bias).</summary>
    public FusedActivation Activation { get; init; }

    /// <summary>Added to the (gated) output: the same shape as the output, or null.</summary>
    public Tensor? Residual { get; init; }

    /// <summary>Multiplies the output before the residual is added, per sample: <c>[samples, N]</c>, or null (gate 1). Needs <see cref="Residual"/>.</summary>
    public Tensor? Gate { get; init; }

    /// <summary>True when there is work on the input rows.</summary>
    public bool HasPrologue => LayerNorm;

    /// <summary>True when there is work on the output.</summary>
    public bool HasEpilogue => Activation != FusedActivation.None || Residual is not null;

    /// <summary>The prologue in TorchSharp ops: <c>layer_norm(x)·(1 + scale) + shift</c> with per-sample rows; returns a new tensor (x itself when there is no prologue).</summary>
    public Tensor ComposePrologue(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!LayerNorm) return x.alias();
        using var scope = torch.NewDisposeScope();
        long k = x.shape[^1];
        var h = nn.functional.layer_norm(x, [k], null, null, LayerNormEpsilon);
        if (Scale is not null) h = h * (PerRow(Scale, x) + 1);
        if (Shift is not null) h = h + PerRow(Shift, x);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>The epilogue in TorchSharp ops: the activation, then <c>residual + gate·y</c>; returns a new tensor (y itself when there is no epilogue).</summary>
    public Tensor ComposeEpilogue(Tensor y)
    {
        ArgumentNullException.ThrowIfNull(y);
        if (!HasEpilogue) return y.alias();
        using var scope = torch.NewDisposeScope();
        var h = Activation == FusedActivation.GeluTanh ? nn.functional.gelu(y, TorchSharp.Modules.GELU.Approximate.tanh) : y;
        if (Residual is not null) h = Gate is null ? Residual + h : Residual + PerRow(Gate, y) * h;
        return h.MoveToOuterDisposeScope();
    }

    // [samples, D] → broadcastable against [samples, tokens..., D] (or [M, D] with M = samples · tokens).
    private static Tensor PerRow(Tensor perSample, Tensor rows)
    {
        if (rows.Dimensions >= 3 && rows.shape[0] == perSample.shape[0])
        {
            var shape = new long[rows.Dimensions];
            Array.Fill(shape, 1L);
            shape[0] = perSample.shape[0];
            shape[^1] = perSample.shape[^1];
            return perSample.reshape(shape);
        }
        long m = rows.numel() / rows.shape[^1];
        return perSample.repeat_interleave(m / perSample.shape[0], 0).reshape(rows.shape);
    }

    /// <summary>Checks the tensors against a call with <paramref name="m"/> rows, <paramref name="k"/> inputs, <paramref name="n"/> outputs; returns the rows per sample.</summary>
    internal long Validate(long m, long k, long n, long[] outputShape, string what)
    {
        if (!(LayerNormEpsilon > 0) || !double.IsFinite(LayerNormEpsilon))
            throw new ArgumentException($"{what}: LayerNormEpsilon must be a positive finite number, got {LayerNormEpsilon}.", nameof(LayerNormEpsilon));
        if ((Shift is not null || Scale is not null) && !LayerNorm)
            throw new ArgumentException($"{what}: Shift / Scale modulate the LayerNorm output; set LayerNorm = true.", nameof(LayerNorm));
        if (Gate is not null && Residual is null)
            throw new ArgumentException($"{what}: Gate multiplies the output before the Residual is added; set Residual too.", nameof(Gate));
        if (!Enum.IsDefined(Activation)) throw new ArgumentException($"{what}: unknown activation {(int)Activation}.", nameof(Activation));
        long samples = 0;
        void PerSample(Tensor? t, long width, string name)
        {
            if (t is null) return;
            TorchIntegerGemm.CheckCpuContiguous(t, name, ScalarType.Float32);
            if (t.Dimensions != 2 || t.shape[1] != width)
                throw new ArgumentException($"{what}: {name} has shape [{string.Join(", ", t.shape)}], expected [samples, {width}].", name);
            if (samples != 0 && t.shape[0] != samples)
                throw new ArgumentException($"{what}: {name} has {t.shape[0]} samples, the other per-sample tensors {samples}.", name);
            samples = t.shape[0];
            if (samples == 0 || m % samples != 0)
                throw new ArgumentException($"{what}: {name} has {samples} samples, which do not divide the call's {m} rows evenly.", name);
        }
        PerSample(Shift, k, nameof(Shift));
        PerSample(Scale, k, nameof(Scale));
        PerSample(Gate, n, nameof(Gate));
        if (Residual is not null)
        {
            TorchIntegerGemm.CheckCpuContiguous(Residual, nameof(Residual), ScalarType.Float32);
            if (!Residual.shape.SequenceEqual(outputShape))
                throw new ArgumentException($"{what}: Residual has shape [{string.Join(", ", Residual.shape)}], expected the output's [{string.Join(", ", outputShape)}].", nameof(Residual));
        }
        return samples == 0 ? m : m / samples;
    }

    /// <summary>
    /// Holds <paramref name="ops"/>' tensors for one native call (see <see cref="Interop.PinnedTensor"/>);
    /// nothing for null. Dispose the result after the call.
    /// </summary>
    /// <exception cref="ObjectDisposedException">A tensor has been disposed (named by its property).</exception>
    internal static Pinned Pin(FusedLinearOps? ops)
    {
        if (ops is null) return default;
        Interop.PinnedTensor shift = default, scale = default, residual = default, gate = default;
        try
        {
            shift = Interop.PinnedTensor.Take(ops.Shift, nameof(Shift));
            scale = Interop.PinnedTensor.Take(ops.Scale, nameof(Scale));
            residual = Interop.PinnedTensor.Take(ops.Residual, nameof(Residual));
            gate = Interop.PinnedTensor.Take(ops.Gate, nameof(Gate));
            return new Pinned(ops, shift, scale, residual, gate);
        }
        catch
        {
            shift.Dispose(); scale.Dispose(); residual.Dispose(); gate.Dispose();
            throw;
        }
    }

    /// <summary>The tensors of one <see cref="FusedLinearOps"/> held for a native call, and the native struct that points into them.</summary>
    internal readonly struct Pinned(FusedLinearOps? ops, Interop.PinnedTensor shift, Interop.PinnedTensor scale, Interop.PinnedTensor residual, Interop.PinnedTensor gate)
        : IDisposable
    {
        /// <summary>The native struct (all zero without ops); valid until this is disposed.</summary>
        public unsafe Interop.LinearOps ToNative(long rowsPerSample, long k, long n) => ops is null ? default : new()
        {
            LayerNorm = ops.LayerNorm ? 1 : 0,
            Eps = (float)ops.LayerNormEpsilon,
            Shift = (float*)shift.Address,
            Scale = (float*)scale.Address,
            LdMod = k,
            RowsPerSample = rowsPerSample,
            Activation = (int)ops.Activation,
            Residual = (float*)residual.Address,
            LdResidual = n,
            Gate = (float*)gate.Address,
            LdGate = n,
        };

        /// <summary>Releases the tensors.</summary>
        public void Dispose()
        {
            shift.Dispose(); scale.Dispose(); residual.Dispose(); gate.Dispose();
        }
    }
}
