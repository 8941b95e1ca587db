using AdaTSQ.Abstractions;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Methods.AdaTSQ.Search;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

/// <summary>
/// A toy "diffusion" whose sensitive step is known by construction: x_{k+1} = x_k + g_k · 0.1 · f(x_k) with
/// f a two-layer MLP; an error of f at step k reaches the final sample scaled by g_k, so the step with the
/// large gain is the one where quantization costs most.
/// </summary>
internal sealed class ToySearchModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> fc1;
    private readonly nn.Module<Tensor, Tensor> fc2;
    private readonly nn.Module<Tensor, Tensor>? mid;

    /// <param name="seed">Seeds the weights.</param>
    /// <param name="middle">Adds a third layer <c>mid</c> (64 → 64, 4× the weights of the others) between fc1 and fc2.</param>
    public ToySearchModel(long seed, bool middle = false) : base(nameof(ToySearchModel))
    {
        torch.manual_seed(seed);
        fc1 = nn.Linear(16, 64);
        fc2 = nn.Linear(64, 16);
        if (middle) mid = nn.Linear(64, 64);
        RegisterComponents();
    }

    public int Calls { get; set; }

    public override Tensor forward(Tensor x, Tensor t, Tensor y)
    {
        Calls++;
        using var scope = torch.NewDisposeScope();
        var flat = x.reshape(x.shape[0], 16);
        var h = torch.tanh(fc1.call(flat));
        if (mid is not null) h = torch.tanh(mid.call(h));
        return fc2.call(h).reshape(x.shape).MoveToOuterDisposeScope();
    }

    /// <summary>Wraps the layers and quantizes each at every bit-width of <paramref name="options"/> (RTN).</summary>
    public IReadOnlyList<QuantLinear> Quantize(BitWidthSearchOptions options)
    {
        ModelSurgery.ReplaceLinears(this);
        var layers = ModelSurgery.FindQuantLinears(this);
        var rtn = new RtnQuantizer();
        foreach (var layer in layers)
            foreach (int b in options.SearchedBits)
                using (var w = layer.SmoothedWeight())
                    layer.SetWeightVersion(rtn.Quantize(layer.LayerName, w, options.ConfigFor(b).Weight, null));
        return layers;
    }

    public SearchTrajectories Trajectories(double[] gains, int samples = 6, long seed = 1)
    {
        using var noise = TestTensors.Randn(seed, samples, 1, 4, 4);
        using var labels = torch.zeros(samples, dtype: ScalarType.Int64);
        return new SearchTrajectories((x, t, y) => call(x, t, y), new GainSampler(gains), noise, labels);
    }

    /// <summary>x_{k+1} = x_k + g_k · 0.1 · model(x_k).</summary>
    internal sealed class GainSampler(double[] gains) : IStepSampler
    {
        public int StepCount => gains.Length;

        public TimestepInfo StepInfo(int step) => new(step, gains.Length, gains.Length - 1 - step);

        public Tensor Step(Denoiser model, Tensor x, Tensor labels, int step)
        {
            using var context = TimestepContext.Enter(StepInfo(step));
            using var scope = torch.NewDisposeScope();
            using var t = torch.full(x.shape[0], (double)step);
            return (x + model(x, t, labels) * (0.1 * gains[step])).MoveToOuterDisposeScope();
        }
    }
}
