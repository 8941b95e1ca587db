using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>Multi-head self-attention with a fused qkv projection (timm's <c>Attention</c>, qkv bias on).</summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly int _heads;

    /// <summary>Creates the layer.</summary>
    public Attention(int dim, int heads) : base(nameof(Attention))
    {
        _heads = heads;
        qkv = nn.Linear(dim, dim * 3);
        proj = nn.Linear(dim, dim);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, FusedLinearOps.None, FusedLinearOps.None);

    /// <summary>
    /// The attention with <paramref name="input"/> applied to x before the qkv projection and
    /// <paramref name="output"/> after the output projection (see <see cref="FusedLinear"/>):
    /// fused into the integer calls when the projections run on the integer kernels.
    /// </summary>
    public Tensor Forward(Tensor x, FusedLinearOps input, FusedLinearOps output)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], c = x.shape[2];
        var parts = FusedLinear.Forward(qkv, x, input).reshape(b, n, 3, _heads, c / _heads).permute(2, 0, 3, 1, 4);
        var o = nn.functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
        return FusedLinear.Forward(proj, o.transpose(1, 2).reshape(b, n, c), output).MoveToOuterDisposeScope();
    }
}
