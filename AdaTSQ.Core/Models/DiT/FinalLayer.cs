using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>The final adaLN-modulated norm and linear projection to patch pixels.</summary>
public sealed class FinalLayer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> norm_final;
    private readonly nn.Module<Tensor, Tensor> linear;
    private readonly nn.Module<Tensor, Tensor> adaLN_modulation;

    /// <summary>Creates the layer.</summary>
    public FinalLayer(int hidden, int patch, int outChannels) : base(nameof(FinalLayer))
    {
        norm_final = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        linear = nn.Linear(hidden, patch * patch * outChannels);
        adaLN_modulation = nn.Sequential(("0", nn.SiLU()), ("1", nn.Linear(hidden, 2 * hidden)));
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, Tensor c)
    {
        using var scope = torch.NewDisposeScope();
        var m = adaLN_modulation.call(c).chunk(2, dim: 1);
        return FusedLinear.Forward(linear, x, DiTBlock.Modulation(m[0], m[1])).MoveToOuterDisposeScope();
    }
}
