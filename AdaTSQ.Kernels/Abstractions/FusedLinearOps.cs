using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// The activation an integer linear call can apply to its output (<see cref="FusedLinearOps.Activation"/>).
/// In the namespace <c>AdaTSQ.Abstractions</c> like <see cref="FusedLinearOps"/> (formerly <c>AdaTSQ.Kernels.FusedActivation</c>).
/// </summary>
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
/// <para>Where it lives: in the <c>AdaTSQ.Kernels</c> assembly, because the kernels take it as their
/// argument (<c>TorchIntegerGemm.Linear</c>) and that assembly does not reference <c>AdaTSQ.Core</c>; in
/// the namespace <c>AdaTSQ.Abstractions</c> (with <c>IFusedLinear</c> and <c>FusedLinear</c> of
/// <c>AdaTSQ.Core</c>), because it is how model code states a fusion, and model code must not import
/// the kernels or the quantization layer. One type for both sides, so nothing is converted between
/// the model and the kernels; the kernel-side checks and the native struct are internal to
/// <c>AdaTSQ.Kernels</c>. Formerly <c>AdaTSQ.Kernels.FusedLinearOps</c>.</para>
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
}
