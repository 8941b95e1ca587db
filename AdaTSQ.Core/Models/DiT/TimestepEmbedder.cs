using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

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
