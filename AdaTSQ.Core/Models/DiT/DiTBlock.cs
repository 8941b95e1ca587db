using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>The DiT block: adaLN-Zero conditioning around attention and MLP.</summary>
public sealed class DiTBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> norm1;
    private readonly Attention attn;
    private readonly nn.Module<Tensor, Tensor> norm2;
    private readonly Mlp mlp;
    private readonly nn.Module<Tensor, Tensor> adaLN_modulation;

    /// <summary>Creates the block.</summary>
    public DiTBlock(int hidden, int heads, int mlpHidden) : base(nameof(DiTBlock))
    {
        norm1 = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        attn = new Attention(hidden, heads);
        norm2 = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        mlp = new Mlp(hidden, mlpHidden);
        adaLN_modulation = nn.Sequential(("0", nn.SiLU()), ("1", nn.Linear(hidden, 6 * hidden)));
        RegisterComponents();
    }

    /// <summary>x·(1 + scale) + shift, per sample.</summary>
    public static Tensor Modulate(Tensor x, Tensor shift, Tensor scale) => x * (scale.unsqueeze(1) + 1) + shift.unsqueeze(1);

    /// <inheritdoc />
    /// <remarks>
    /// <c>x += gate_msa·attn(modulate(norm1(x)))</c>, <c>x += gate_mlp·mlp(modulate(norm2(x)))</c>, written as
    /// <see cref="FusedLinearOps"/> around the first and last linear of each branch: the same TorchSharp ops
    /// as the official block for float layers, one fused integer call each for layers on the integer kernels.
    /// </remarks>
    public override Tensor forward(Tensor x, Tensor c)
    {
        using var scope = torch.NewDisposeScope();
        var m = adaLN_modulation.call(c).chunk(6, dim: 1);
        x = attn.Forward(x, Modulation(m[0], m[1]), new FusedLinearOps { Residual = x, Gate = m[2] });
        x = mlp.Forward(x, Modulation(m[3], m[4]), new FusedLinearOps { Residual = x, Gate = m[5] });
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>The prologue <c>modulate(LayerNorm(x), shift, scale)</c> (the blocks' norms: eps 1e-6, no affine).</summary>
    internal static FusedLinearOps Modulation(Tensor shift, Tensor scale) =>
        new() { LayerNorm = true, LayerNormEpsilon = 1e-6, Shift = shift, Scale = scale };
}
