using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>Two-layer MLP with tanh-approximated GELU (timm's <c>Mlp</c> as DiT uses it).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> fc1;
    private readonly nn.Module<Tensor, Tensor> fc2;

    /// <summary>Creates the layer.</summary>
    public Mlp(int dim, int hidden) : base(nameof(Mlp))
    {
        fc1 = nn.Linear(dim, hidden);
        fc2 = nn.Linear(hidden, dim);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, FusedLinearOps.None, FusedLinearOps.None);

    /// <summary>
    /// The MLP with <paramref name="input"/> applied to x before fc1 and <paramref name="output"/>
    /// after fc2 (the GELU between them is fc1's epilogue); fused into the integer calls when the
    /// layers run on the integer kernels (see <see cref="FusedLinear"/>).
    /// </summary>
    public Tensor Forward(Tensor x, FusedLinearOps input, FusedLinearOps output)
    {
        if (input.HasEpilogue) throw new ArgumentException("the MLP's input ops can only have a prologue (fc1's epilogue is the GELU).", nameof(input));
        using var scope = torch.NewDisposeScope();
        var fc1Ops = new FusedLinearOps
        {
            LayerNorm = input.LayerNorm, LayerNormEpsilon = input.LayerNormEpsilon, Shift = input.Shift, Scale = input.Scale,
            Activation = FusedActivation.GeluTanh,
        };
        var h = FusedLinear.Forward(fc1, x, fc1Ops);
        return FusedLinear.Forward(fc2, h, output).MoveToOuterDisposeScope();
    }
}
