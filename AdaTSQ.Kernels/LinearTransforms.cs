using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>
/// The per-layer transforms of a quantized linear layer that an integer call runs inside the call (ABI 5):
/// an <see cref="InputScale"/> that multiplies each input row per channel (SmoothQuant's <c>1 / s</c>) after the
/// <see cref="Abstractions.FusedLinearOps"/> prologue, then a <see cref="Rotation"/> (QuaRot), before the row is quantized, and a full-precision low-rank
/// branch (SVDQuant's <c>L1 · L2</c>) whose down-projection <c>x̃ · L2ᵀ</c> is computed while each row is quantized
/// and whose up-projection is added to the output after the bias, before the activation and the residual:
/// <c>y = Q(x̃)·Q(W)ᵀ + bias + x̃·L2ᵀ·L1ᵀ</c> with <c>x̃ = rotate(prologue(x) · InputScale)</c>.
/// </summary>
/// <remarks>
/// All tensors are float32, contiguous and on the CPU. <see cref="ComposeInput"/> and <see cref="ComposeBranch"/>
/// are the same operations in TorchSharp (what the fused call is tested against). The input scale is one rounded
/// product per element in both, so the quantized codes are the same; the branch's dot products sum in another
/// order than torch's matmul (float rounding, not bit for bit).
/// </remarks>
public sealed class LinearTransforms
{
    /// <summary>The largest rank the native kernels take (<c>ADATSQ_MAX_RANK</c>).</summary>
    public const int MaxRank = 1024;

    /// <summary>Multiplies each input row per channel before quantization: <c>[K]</c>, or null.</summary>
    public Tensor? InputScale { get; init; }

    /// <summary>The branch's down factor L2 <c>[r, K]</c>, or null (then <see cref="LowRankUp"/> must be null too).</summary>
    public Tensor? LowRankDown { get; init; }

    /// <summary>The branch's up factor L1 <c>[N, r]</c>, or null.</summary>
    public Tensor? LowRankUp { get; init; }

    /// <summary>QuaRot's rotation, applied after <see cref="InputScale"/> and before quantization and the branch, or null.</summary>
    public FusedRotation? Rotation { get; init; }

    /// <summary>The branch's rank r (0 without a branch).</summary>
    public long Rank => LowRankDown?.shape[0] ?? 0;

    /// <summary>True when there is nothing to do.</summary>
    public bool IsEmpty => InputScale is null && Rotation is null && LowRankDown is null && LowRankUp is null;

    /// <summary><c>x̃ = rotate(x · InputScale)</c> in TorchSharp (a new tensor; an alias of x without scale and rotation).</summary>
    public Tensor ComposeInput(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (Rotation is null) return InputScale is null ? x.alias() : x * InputScale;
        using var scaled = InputScale is null ? x.alias() : x * InputScale;
        return Rotation.Compose(scaled);
    }

    /// <summary><c>x̃ · L2ᵀ · L1ᵀ</c> in TorchSharp for the transformed input <paramref name="transformed"/>, or null without a branch.</summary>
    public Tensor? ComposeBranch(Tensor transformed)
    {
        ArgumentNullException.ThrowIfNull(transformed);
        if (LowRankDown is null || LowRankUp is null) return null;
        using var down = transformed.matmul(LowRankDown.t());
        return down.matmul(LowRankUp.t());
    }

    /// <summary>Checks the tensors against a call with <paramref name="k"/> inputs and <paramref name="n"/> outputs (<see cref="ArgumentException"/> naming the property).</summary>
    internal void Validate(long k, long n, string what)
    {
        if (InputScale is not null)
        {
            TorchIntegerGemm.CheckCpuContiguous(InputScale, nameof(InputScale), ScalarType.Float32);
            if (InputScale.Dimensions != 1 || InputScale.shape[0] != k)
                throw new ArgumentException($"{what}: InputScale has shape [{string.Join(", ", InputScale.shape)}], expected [{k}].", nameof(InputScale));
        }
        Rotation?.Validate(k, what);
        if ((LowRankDown is null) != (LowRankUp is null))
            throw new ArgumentException($"{what}: the low-rank branch needs both LowRankDown [r, {k}] and LowRankUp [{n}, r], or neither.", LowRankDown is null ? nameof(LowRankDown) : nameof(LowRankUp));
        if (LowRankDown is null || LowRankUp is null) return;
        TorchIntegerGemm.CheckCpuContiguous(LowRankDown, nameof(LowRankDown), ScalarType.Float32);
        TorchIntegerGemm.CheckCpuContiguous(LowRankUp, nameof(LowRankUp), ScalarType.Float32);
        if (LowRankDown.Dimensions != 2 || LowRankDown.shape[1] != k)
            throw new ArgumentException($"{what}: LowRankDown has shape [{string.Join(", ", LowRankDown.shape)}], expected [r, {k}].", nameof(LowRankDown));
        long r = LowRankDown.shape[0];
        if (r < 1 || r > MaxRank)
            throw new ArgumentException($"{what}: the low-rank branch has rank {r}; the kernels take 1 to {MaxRank}.", nameof(LowRankDown));
        if (LowRankUp.Dimensions != 2 || LowRankUp.shape[0] != n || LowRankUp.shape[1] != r)
            throw new ArgumentException($"{what}: LowRankUp has shape [{string.Join(", ", LowRankUp.shape)}], expected [{n}, {r}].", nameof(LowRankUp));
    }
}
