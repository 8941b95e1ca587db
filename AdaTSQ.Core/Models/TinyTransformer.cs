using AdaTSQ.Models.DiT;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models;

/// <summary>
/// A small pre-norm transformer encoder over <c>[batch, tokens, width]</c> inputs, with the linear
/// layers of a DiT block (the same <see cref="Attention"/> and <see cref="Mlp"/>: qkv/proj, fc1/fc2) and a linear head. It exists for examples,
/// tests and benchmarks: a real transformer computation with seeded random weights, no checkpoint.
/// </summary>
/// <remarks>Layer names: <c>blocks.{i}.attn.qkv</c>, <c>blocks.{i}.attn.proj</c>, <c>blocks.{i}.mlp.fc1</c>,
/// <c>blocks.{i}.mlp.fc2</c>, <c>head</c>.</remarks>
public sealed class TinyTransformer : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> blocks;
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly nn.Module<Tensor, Tensor> head;

    /// <summary>
    /// Creates the model with weights drawn from the seeded global generator
    /// (<c>torch.manual_seed(<paramref name="seed"/>)</c> is called first).
    /// </summary>
    public TinyTransformer(int width = 64, int depth = 2, int heads = 4, int mlpRatio = 4, long seed = 0, Device? device = null)
        : base(nameof(TinyTransformer))
    {
        if (width <= 0 || depth <= 0 || heads <= 0 || mlpRatio <= 0)
            throw new ArgumentException($"width, depth, heads and mlpRatio must be positive (got {width}, {depth}, {heads}, {mlpRatio}).");
        if (width % heads != 0) throw new ArgumentException($"width {width} is not divisible by heads {heads}.");
        torch.manual_seed(seed);
        Width = width;
        blocks = nn.Sequential(Enumerable.Range(0, depth).Select(i => ((string, nn.Module<Tensor, Tensor>))($"{i}", new Block(width, heads, mlpRatio))).ToArray());
        norm = nn.LayerNorm(width);
        head = nn.Linear(width, width);
        RegisterComponents();
        if (device is not null) this.to(device);
    }

    /// <summary>Model width (features per token).</summary>
    public int Width { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = blocks.call(x);
        return head.call(norm.call(h)).MoveToOuterDisposeScope();
    }

    private sealed class Block : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> norm1;
        private readonly Attention attn;
        private readonly nn.Module<Tensor, Tensor> norm2;
        private readonly Mlp mlp;

        public Block(int width, int heads, int mlpRatio) : base(nameof(Block))
        {
            norm1 = nn.LayerNorm(width);
            attn = new Attention(width, heads);
            norm2 = nn.LayerNorm(width);
            mlp = new Mlp(width, width * mlpRatio);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            var h = x + attn.call(norm1.call(x));
            return (h + mlp.call(norm2.call(h))).MoveToOuterDisposeScope();
        }
    }
}
