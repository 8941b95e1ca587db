using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>
/// The Diffusion Transformer of Peebles &amp; Xie (official <c>models.py</c>), in TorchSharp, with the
/// official parameter names so that official checkpoints load without renaming:
/// <c>x_embedder.proj</c>, <c>t_embedder.mlp.{0,2}</c>, <c>y_embedder.embedding_table</c>,
/// <c>pos_embed</c>, <c>blocks.{i}.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}</c>,
/// <c>final_layer.{linear, adaLN_modulation.1}</c>.
/// </summary>
/// <remarks>
/// <c>forward(x, t, y)</c>: x <c>[N, C, H, W]</c>, t <c>[N]</c> timesteps (float or integer, may be
/// fractional), y <c>[N]</c> int64 labels (<see cref="NullClass"/> = unconditional); returns
/// <c>[N, OutChannels, H, W]</c>. In training mode labels are dropped to the null class with
/// probability <see cref="DiTConfig.ClassDropoutProb"/>. Its linear layers are ordinary
/// <c>Linear</c> modules held in <c>Module&lt;Tensor, Tensor&gt;</c> fields, so
/// <see cref="Quantization.ModelSurgery"/> can quantize any of them.
/// </remarks>
public sealed class DiT : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly PatchEmbed x_embedder;
    private readonly TimestepEmbedder t_embedder;
    private readonly LabelEmbedder y_embedder;
    private readonly ModuleList<DiTBlock> blocks;
    private readonly FinalLayer final_layer;

    /// <summary>
    /// Creates the model with the official initialisation (Xavier-uniform linears with zero bias,
    /// N(0, 0.02) label table and timestep MLP, zeroed adaLN modulations and output layer), drawing
    /// from the global generator after <c>torch.manual_seed(<paramref name="seed"/>)</c>.
    /// </summary>
    public DiT(DiTConfig config, long seed = 0, Device? device = null) : base(nameof(DiT))
    {
        var problems = config.FindProblems();
        if (problems.Count > 0) throw new ArgumentException("invalid DiT configuration: " + string.Join(" ", problems), nameof(config));
        Config = config;
        torch.manual_seed(seed);
        x_embedder = new PatchEmbed(config.PatchSize, config.InChannels, config.HiddenSize);
        t_embedder = new TimestepEmbedder(config.HiddenSize);
        y_embedder = new LabelEmbedder(config.NumClasses, config.HiddenSize, config.ClassDropoutProb);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Depth).Select(_ => new DiTBlock(config.HiddenSize, config.NumHeads, config.MlpHidden)).ToArray());
        final_layer = new FinalLayer(config.HiddenSize, config.PatchSize, config.OutChannels);
        RegisterComponents();
        register_buffer("pos_embed", SinCosPositionEmbedding.Create(config.HiddenSize, config.InputSize / config.PatchSize).unsqueeze(0));
        InitializeWeights();
        if (device is not null) this.to(device);
    }

    /// <summary>The configuration.</summary>
    public DiTConfig Config { get; }

    /// <summary>The label meaning "no class" (classifier-free guidance); only valid when ClassDropoutProb &gt; 0.</summary>
    public int NullClass => Config.NumClasses;

    /// <summary>Generator for label dropout in training (null = the global generator).</summary>
    public Generator? LabelDropoutGenerator { get; set; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, Tensor t, Tensor y)
    {
        CheckInputs(x, t, y);
        using var scope = torch.NewDisposeScope();
        var pos = get_buffer("pos_embed")!;
        var h = x_embedder.call(x) + pos;
        var labels = training && Config.ClassDropoutProb > 0 ? y_embedder.DropLabels(y, LabelDropoutGenerator) : y;
        var c = t_embedder.call(t) + y_embedder.call(labels);
        foreach (var block in blocks) h = block.call(h, c);
        return Unpatchify(final_layer.call(h, c)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The official <c>forward_with_cfg</c>: <paramref name="x"/> holds the same latents twice (first
    /// half with the real labels, second half with the null class in <paramref name="y"/>); the
    /// prediction of the first <paramref name="guidedChannels"/> channels becomes
    /// uncond + scale·(cond − uncond) in both halves, and every other channel keeps its own half's
    /// prediction. This is the same rule as <see cref="Sampling.SamplingOptions.GuidedChannels"/> (whose
    /// samplers return the first half): null guides all <see cref="DiTConfig.InChannels"/> (the standard
    /// choice); the official code guides <see cref="DiTConfig.OfficialGuidedChannels"/> (3) "for exact
    /// reproducibility".
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="guidedChannels"/> is outside [1, InChannels].</exception>
    public Tensor ForwardWithCfg(Tensor x, Tensor t, Tensor y, double cfgScale, int? guidedChannels = null)
    {
        if (x.shape[0] % 2 != 0) throw new ArgumentException($"classifier-free guidance needs an even batch (cond + uncond halves), got {x.shape[0]}.", nameof(x));
        int k = Sampling.GuidedPrediction.GuidedChannelCount(guidedChannels, Config.InChannels, nameof(guidedChannels));
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0] / 2;
        var half = x[..(int)n];
        var output = forward(torch.cat([half, half], dim: 0), t, y);
        var uncond = output[(int)n..];
        var first = Sampling.GuidedPrediction.Guide(output[..(int)n], uncond, cfgScale, k);
        var second = torch.cat([first[.., ..k], uncond[.., k..]], dim: 1);
        return torch.cat([first, second], dim: 0).MoveToOuterDisposeScope();
    }

    /// <summary>Tokens <c>[N, T, p·p·C]</c> → images <c>[N, C, H, W]</c> (the official <c>unpatchify</c>).</summary>
    public Tensor Unpatchify(Tensor tokens)
    {
        int p = Config.PatchSize, c = Config.OutChannels;
        long n = tokens.shape[0];
        int g = (int)Math.Round(Math.Sqrt(tokens.shape[1]));
        if (g * g != tokens.shape[1]) throw new ArgumentException($"{tokens.shape[1]} tokens do not form a square grid.", nameof(tokens));
        using var scope = torch.NewDisposeScope();
        return tokens.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, g * p, g * p).MoveToOuterDisposeScope();
    }

    /// <summary>Images <c>[N, C, H, W]</c> → tokens <c>[N, T, p·p·C]</c>, the inverse of <see cref="Unpatchify"/>.</summary>
    public Tensor Patchify(Tensor images)
    {
        int p = Config.PatchSize;
        long n = images.shape[0], c = images.shape[1];
        long g = images.shape[2] / p;
        using var scope = torch.NewDisposeScope();
        return images.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c).MoveToOuterDisposeScope();
    }

    private void CheckInputs(Tensor x, Tensor t, Tensor y)
    {
        var cfg = Config;
        if (x.Dimensions != 4 || x.shape[1] != cfg.InChannels || x.shape[2] != cfg.InputSize || x.shape[3] != cfg.InputSize)
            throw new ArgumentException($"DiT input x has shape [{string.Join(", ", x.shape)}], expected [N, {cfg.InChannels}, {cfg.InputSize}, {cfg.InputSize}].", nameof(x));
        if (t.Dimensions != 1 || t.shape[0] != x.shape[0])
            throw new ArgumentException($"DiT timesteps t have shape [{string.Join(", ", t.shape)}], expected [{x.shape[0]}].", nameof(t));
        if (y.Dimensions != 1 || y.shape[0] != x.shape[0] || y.dtype != ScalarType.Int64)
            throw new ArgumentException($"DiT labels y have shape [{string.Join(", ", y.shape)}] and dtype {y.dtype}, expected [{x.shape[0]}] int64.", nameof(y));
    }

    private void InitializeWeights()
    {
        using var noGrad = torch.no_grad();
        foreach (var (_, module) in named_modules())
        {
            if (module is Linear linear)
            {
                nn.init.xavier_uniform_(linear.weight);
                if (linear.bias is not null) nn.init.zeros_(linear.bias);
            }
        }
        var parameters = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var patch = parameters["x_embedder.proj.weight"];
        using (var view = patch.view(patch.shape[0], -1)) nn.init.xavier_uniform_(view);
        nn.init.zeros_(parameters["x_embedder.proj.bias"]);
        nn.init.normal_(parameters["y_embedder.embedding_table.weight"], std: 0.02);
        nn.init.normal_(parameters["t_embedder.mlp.0.weight"], std: 0.02);
        nn.init.normal_(parameters["t_embedder.mlp.2.weight"], std: 0.02);
        foreach (var (name, p) in parameters)
            if (name.Contains("adaLN_modulation.1.", StringComparison.Ordinal) || name.StartsWith("final_layer.linear.", StringComparison.Ordinal))
                nn.init.zeros_(p);
    }
}
