using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>Class labels → vectors, with the extra "null" class used for classifier-free guidance.</summary>
public sealed class LabelEmbedder : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Embedding embedding_table;
    private readonly int _numClasses;
    private readonly double _dropoutProb;

    /// <summary>Creates the layer (a null-class row is added when <paramref name="dropoutProb"/> &gt; 0).</summary>
    public LabelEmbedder(int numClasses, int hidden, double dropoutProb) : base(nameof(LabelEmbedder))
    {
        _numClasses = numClasses;
        _dropoutProb = dropoutProb;
        embedding_table = nn.Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hidden);
        RegisterComponents();
    }

    /// <summary>The index of the null (unconditional) class.</summary>
    public int NullClass => _numClasses;

    /// <summary>In training mode, replaces each label by the null class with the dropout probability (using <paramref name="generator"/>).</summary>
    public Tensor DropLabels(Tensor labels, Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        var drop = torch.rand(labels.shape[0], generator: generator, device: labels.device) < _dropoutProb;
        return torch.where(drop, torch.full_like(labels, _numClasses), labels).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor labels) => embedding_table.call(labels);
}
