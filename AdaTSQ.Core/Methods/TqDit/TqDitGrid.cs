using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>
/// TQ-DiT's scalar quantizers (Hwang et al., arXiv 2502.04056), written from the paper's equations: the symmetric uniform
/// quantizer with its initial step Δ0 and the candidate grid of the step search, and the two multi-region quantizers (MRQ)
/// for post-softmax and post-GELU activations. All functions are pure (fake quantization: quantize, then dequantize).
/// </summary>
public static class TqDitGrid
{
    /// <summary>|min GELU(x)| of the tanh GELU, 0.16997: MRQ's fixed negative range after GELU.</summary>
    public const double GeluNegativeRange = 0.16997124;

    /// <summary>
    /// The initial step of a <paramref name="bits"/>-bit symmetric quantizer: <c>Δ0 = max|x| / (2^(k−1) − 0.5)</c>.
    /// <paramref name="maxAbs"/> 0 gives the smallest positive step (an all-zero tensor).
    /// </summary>
    public static double InitialStep(double maxAbs, int bits)
    {
        CheckBits(bits);
        if (!(maxAbs >= 0) || double.IsInfinity(maxAbs)) throw new ArgumentOutOfRangeException(nameof(maxAbs), $"max|x| {maxAbs} must be finite and non-negative.");
        return Math.Max(maxAbs / ((1 << (bits - 1)) - 0.5), Quantization.QuantParams.MinScale);
    }

    /// <summary>
    /// The search's candidate steps <c>Δ_i = (α + i(β − α)/n)·Δ0</c> for <c>i = 0…n</c> (n + 1 candidates).
    /// </summary>
    public static double[] Candidates(double delta0, double alpha, double beta, int n)
    {
        if (!(delta0 > 0)) throw new ArgumentOutOfRangeException(nameof(delta0), $"Δ0 {delta0} must be positive.");
        if (!(alpha > 0) || !(beta >= alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), $"the grid needs 0 < α ≤ β, got α {alpha}, β {beta}.");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"n {n} must not be negative.");
        var c = new double[n + 1];
        for (int i = 0; i <= n; i++) c[i] = (alpha + (n == 0 ? 0 : i * (beta - alpha) / n)) * delta0;
        return c;
    }

    /// <summary>
    /// The symmetric quantizer <c>q(x) = clamp(round(x/Δ), qmin, qmax)·Δ</c>. The paper's grid is <c>qmin = −2^(k−1)</c>,
    /// <c>qmax = 2^(k−1) − 1</c> (<see cref="PaperRange"/>); the library stores and runs the restricted grid
    /// <c>±(2^(k−1) − 1)</c> (<see cref="LibraryRange"/>), which is what TQ-DiT's search scores here.
    /// Rounding is to nearest, ties to even (torch.round).
    /// </summary>
    public static Tensor FakeQuantize(Tensor x, double delta, int qmin, int qmax)
    {
        if (!(delta > 0)) throw new ArgumentOutOfRangeException(nameof(delta), $"step {delta} must be positive.");
        using var scope = torch.NewDisposeScope();
        return (x / delta).round_().clamp_(qmin, qmax).mul_(delta).MoveToOuterDisposeScope();
    }

    /// <summary>The paper's integer range of a <paramref name="bits"/>-bit symmetric quantizer: [−2^(k−1), 2^(k−1) − 1].</summary>
    public static (int QMin, int QMax) PaperRange(int bits)
    {
        CheckBits(bits);
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1);
    }

    /// <summary>The library's (restricted, symmetric) integer range: [−(2^(k−1) − 1), 2^(k−1) − 1], as <see cref="Quantization.QuantSpec"/>.</summary>
    public static (int QMin, int QMax) LibraryRange(int bits)
    {
        CheckBits(bits);
        return (-((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1);
    }

    /// <summary>
    /// MRQ after GELU, from the paper: k-bit codes split by sign; negative inputs use the 2^(k−1) codes
    /// <c>−2^(k−1)…0</c> with the fixed step <c>s⁻ = 0.16997/2^(k−1)</c>, non-negative inputs the codes <c>0…2^(k−1) − 1</c> with the
    /// searched step <paramref name="positiveStep"/>:
    /// <c>q(x) = clamp(round(x/s⁻), −2^(k−1), 0)·s⁻</c> for x &lt; 0, <c>clamp(round(x/s⁺), 0, 2^(k−1) − 1)·s⁺</c> otherwise.
    /// </summary>
    public static Tensor PostGelu(Tensor x, int bits, double positiveStep)
    {
        CheckBits(bits);
        if (!(positiveStep > 0)) throw new ArgumentOutOfRangeException(nameof(positiveStep), $"step {positiveStep} must be positive.");
        int half = 1 << (bits - 1);
        double negativeStep = GeluNegativeRange / half;
        using var scope = torch.NewDisposeScope();
        var neg = (x / negativeStep).round_().clamp_(-half, 0).mul_(negativeStep);
        var pos = (x / positiveStep).round_().clamp_(0, half - 1).mul_(positiveStep);
        return torch.where(x < 0, neg, pos).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// MRQ after softmax (values in [0, 1]), the paper's piecewise form: with <c>m = 2^(k−1)</c>, region 1 <c>[0, m·s1)</c> uses step
    /// <paramref name="smallStep"/> s1 and codes <c>0…m − 1</c>; region 2 <c>[m·s1, 1]</c> uses the fixed step <c>1/m</c> and codes <c>0…m</c>
    /// (values <c>j/m</c>). Each value is quantized in its own region only. The reference code instead adds the two regions'
    /// outputs, which shifts every value of region 2 up by about the split <c>m·s1</c>; this follows the paper.
    /// </summary>
    public static Tensor PostSoftmax(Tensor x, int bits, double smallStep)
    {
        CheckBits(bits);
        if (!(smallStep > 0)) throw new ArgumentOutOfRangeException(nameof(smallStep), $"step {smallStep} must be positive.");
        int m = 1 << (bits - 1);
        double split = m * smallStep;
        using var scope = torch.NewDisposeScope();
        var small = (x / smallStep).round_().clamp_(0, m - 1).mul_(smallStep);
        var large = (x * m).round_().clamp_(0, m).div_(m);
        return torch.where(x < split, small, large).MoveToOuterDisposeScope();
    }

    private static void CheckBits(int bits)
    {
        if (bits < 2 || bits > 8) throw new ArgumentOutOfRangeException(nameof(bits), $"TQ-DiT quantizes to 2–8 bits, got {bits}.");
    }
}
