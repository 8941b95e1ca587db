using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Benchmarks;

/// <summary>The integer modes of the DiT forward benchmarks (DiTForwardBenchmarks, quick-dit), set up the same way in both.</summary>
internal static class BenchmarkModels
{
    /// <summary>
    /// Replaces the linears of <paramref name="dit"/> and quantizes them for <paramref name="mode"/>:
    /// <c>W8A8-int</c> (per channel, per token), <c>W4A8-int</c> (W4 g64, A8 per token), <c>W4A4-g64-int</c>
    /// (W4 g64, A4 per token × per group of 64) and <c>W4A4-g64+LR&lt;r&gt;-int</c> (the same plus SVDQuant's
    /// smoothing and a rank-r low-rank branch with random factors, fused into the integer calls), <c>W4A4-g64+ROT-int</c>
    /// (W4A4 g64 with QuaRot's Hadamard rotation on every layer whose K has one, fused into the prologue). Layers whose K is
    /// not a multiple of 64 take per-channel weights and per-token activations.
    /// </summary>
    public static void Quantize(DiT dit, string mode)
    {
        int wBits = mode.StartsWith("W8") ? 8 : 4;
        int aBits = mode.Contains("A4") ? 4 : 8;
        bool aGroups = mode.Contains("-g64");
        int rank = mode.Contains("+LR") ? int.Parse(mode[(mode.IndexOf("+LR") + 3)..].Split('-')[0]) : 0;
        bool rotate = mode.Contains("+ROT");
        using var gen = new Generator(7);
        ModelSurgery.ReplaceLinears(dit);
        foreach (var q in ModelSurgery.FindQuantLinears(dit))
        {
            bool by64 = q.InFeatures % 64 == 0;
            var w = wBits == 8 || !by64 ? QuantSpec.Weight(wBits) : QuantSpec.Weight(4, groupSize: 64);
            var a = aGroups && by64 ? QuantSpec.Activation(aBits, 64) : QuantSpec.Activation(aBits);
            if (rank > 0)
            {
                using var scope = torch.NewDisposeScope();
                q.SetInputSmoothing(torch.rand([q.InFeatures], generator: gen) + 0.5);
                q.SetLowRankBranch(torch.randn([q.OutFeatures, rank], generator: gen) * 0.01, torch.randn([rank, q.InFeatures], generator: gen) * 0.01);
            }
            if (rotate && AdaTSQ.Methods.QuaRot.Hadamard.Factor(q.InFeatures, out _, out _))
                using (var rotation = AdaTSQ.Methods.QuaRot.HadamardRotation.Create(q.InFeatures, seed: 0)) q.SetInputRotation(rotation);
            using (var weight = q.SmoothedWeight()) q.SetWeightVersion(QuantizedTensor.Quantize(weight, w));
            q.DefaultConfig = new LayerQuantConfig(w, a);
        }
    }
}
