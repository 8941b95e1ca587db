using AdaTSQ.Kernels;
using AdaTSQ.Quantization;
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

/// <summary>Sinusoidal embedding of (possibly fractional) timesteps followed by an MLP (Linear, SiLU, Linear).</summary>
public sealed class TimestepEmbedder : nn.Module<Tensor, Tensor>
{
    /// <summary>Width of the sinusoidal embedding.</summary>
    public const int FrequencyEmbeddingSize = 256;
    private readonly nn.Module<Tensor, Tensor> mlp;

    /// <summary>Creates the layer.</summary>
    public TimestepEmbedder(int hidden) : base(nameof(TimestepEmbedder))
    {
        mlp = nn.Sequential(("0", nn.Linear(FrequencyEmbeddingSize, hidden)), ("1", nn.SiLU()), ("2", nn.Linear(hidden, hidden)));
        RegisterComponents();
    }

    /// <summary>
    /// [cos(t·f_0..f_{d/2−1}), sin(t·f_0..)] with f_i = exp(−ln(maxPeriod)·i/(d/2)): the official
    /// <c>timestep_embedding</c>, zero-padded when <paramref name="dim"/> is odd.
    /// </summary>
    public static Tensor SinusoidalEmbedding(Tensor t, int dim, double maxPeriod = 10000)
    {
        using var scope = torch.NewDisposeScope();
        int half = dim / 2;
        var freqs = torch.exp(-Math.Log(maxPeriod) * torch.arange(0, half, dtype: ScalarType.Float32, device: t.device) / half);
        var args = t.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        var emb = torch.cat([torch.cos(args), torch.sin(args)], dim: -1);
        if (dim % 2 == 1) emb = torch.cat([emb, torch.zeros_like(emb[.., ..1])], dim: -1);
        return emb.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        using var freq = SinusoidalEmbedding(t, FrequencyEmbeddingSize);
        return mlp.call(freq.to(FirstWeightDtype())).MoveToOuterDisposeScope();
    }

    private ScalarType FirstWeightDtype() => parameters().First().dtype;
}

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
