using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// A full-precision low-rank branch <c>L1 · L2</c> beside a quantized weight, as in SVDQuant (Li et al., ICLR 2025,
/// arXiv 2411.05007): <see cref="Up"/> <c>L1 [out, r]</c> and <see cref="Down"/> <c>L2 [r, in]</c>. A layer holding one
/// adds <c>x̃ · L2ᵀ · L1ᵀ</c> to its quantized calls, where <c>x̃</c> is the input its quantized GEMM sees. Owns its
/// tensors (detached copies in the layer's dtype, on its device).
/// </summary>
public sealed class LowRankBranch : IDisposable
{
    private LowRankBranch(Tensor up, Tensor down)
    {
        Up = up;
        Down = down;
    }

    /// <summary>L1 <c>[out, r]</c>.</summary>
    public Tensor Up { get; }

    /// <summary>L2 <c>[r, in]</c>.</summary>
    public Tensor Down { get; }

    /// <summary>The rank r.</summary>
    public long Rank => Down.shape[0];

    /// <summary>Bytes of L1 and L2.</summary>
    public long Bytes => Up.numel() * Up.ElementSize + Down.numel() * Down.ElementSize;

    /// <summary>Copies of <paramref name="up"/> and <paramref name="down"/> in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    internal static LowRankBranch Create(Tensor up, Tensor down, ScalarType dtype, Device device)
    {
        using var noGrad = torch.no_grad();
        return new(up.detach().to(dtype, device, copy: true).DetachFromDisposeScope(), down.detach().to(dtype, device, copy: true).DetachFromDisposeScope());
    }

    /// <summary><c>L1 · L2</c> <c>[out, in]</c> (a new tensor).</summary>
    public Tensor Product()
    {
        using var noGrad = torch.no_grad();
        return Up.mm(Down);
    }

    /// <summary><c>x · L2ᵀ · L1ᵀ</c> for an input <c>[..., in]</c>: two thin GEMMs, never the full <c>[out, in]</c> product.</summary>
    public Tensor Forward(Tensor x)
    {
        using var down = x.matmul(Down.t());
        return down.matmul(Up.t());
    }

    /// <summary>This branch in <paramref name="dtype"/> on <paramref name="device"/> (this object when nothing changes; else a new one, and this one is disposed).</summary>
    internal LowRankBranch To(ScalarType dtype, Device device)
    {
        if (Up.dtype == dtype && Up.device.type == device.type && Up.device.index == device.index) return this;
        var moved = Create(Up, Down, dtype, device);
        Dispose();
        return moved;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Up.Dispose();
        Down.Dispose();
    }
}
