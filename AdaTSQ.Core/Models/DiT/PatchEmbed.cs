using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>Image → patch tokens: a stride-p convolution, flattened to <c>[N, T, D]</c> (timm's <c>PatchEmbed</c>).</summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> proj;

    /// <summary>Creates the layer.</summary>
    public PatchEmbed(int patch, int inChannels, int dim) : base(nameof(PatchEmbed))
    {
        proj = nn.Conv2d(inChannels, dim, kernel_size: patch, stride: patch);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return proj.call(x).flatten(2).transpose(1, 2).MoveToOuterDisposeScope();
    }
}
