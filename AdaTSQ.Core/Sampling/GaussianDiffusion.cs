using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Sampling;

/// <summary>How the reverse-process variance is chosen (the official <c>ModelVarType</c>).</summary>
public enum VarianceType
{
    /// <summary>The model predicts v ∈ [−1, 1] per pixel; log σ² = ((v+1)/2)·log β_t + (1 − (v+1)/2)·log β̃_t (learn_sigma).</summary>
    LearnedRange,
    /// <summary>σ² = β_t (with β̃_1 at t = 0): DiT's choice without learned sigma.</summary>
    FixedLarge,
    /// <summary>σ² = β̃_t, the posterior variance.</summary>
    FixedSmall,
}

/// <summary>
/// The discrete Gaussian diffusion of DDPM as the official DiT code builds it: a linear β schedule
/// over 1000 steps (β from 1e-4·1000/T to 0.02·1000/T), optionally respaced to fewer steps
/// (<see cref="SpaceTimesteps"/>), with the closed-form quantities sampling and training need.
/// All schedule arrays are float64 and indexed by the <em>spaced</em> step; <see cref="TimestepMap"/>
/// gives the original timestep the model is called with.
/// </summary>
public sealed class GaussianDiffusion
{
    private GaussianDiffusion(double[] betas, int[] timestepMap, VarianceType varianceType, int originalSteps)
    {
        Betas = betas;
        TimestepMap = timestepMap;
        VarianceType = varianceType;
        OriginalSteps = originalSteps;
        int n = betas.Length;
        AlphasCumprod = new double[n];
        double acc = 1;
        for (int i = 0; i < n; i++) { acc *= 1 - betas[i]; AlphasCumprod[i] = acc; }
        AlphasCumprodPrev = [1.0, .. AlphasCumprod[..^1]];
        PosteriorVariance = new double[n];
        PosteriorMeanCoef1 = new double[n];
        PosteriorMeanCoef2 = new double[n];
        for (int i = 0; i < n; i++)
        {
            PosteriorVariance[i] = betas[i] * (1 - AlphasCumprodPrev[i]) / (1 - AlphasCumprod[i]);
            PosteriorMeanCoef1[i] = betas[i] * Math.Sqrt(AlphasCumprodPrev[i]) / (1 - AlphasCumprod[i]);
            PosteriorMeanCoef2[i] = (1 - AlphasCumprodPrev[i]) * Math.Sqrt(1 - betas[i]) / (1 - AlphasCumprod[i]);
        }
        PosteriorLogVarianceClipped = PosteriorVariance.Select((v, i) => Math.Log(i == 0 ? (n > 1 ? PosteriorVariance[1] : betas[0]) : v)).ToArray();
    }

    /// <summary>β_t of the (spaced) schedule.</summary>
    public double[] Betas { get; }
    /// <summary>ᾱ_t = Π_{s≤t}(1 − β_s).</summary>
    public double[] AlphasCumprod { get; }
    /// <summary>ᾱ_{t−1} (1 at t = 0).</summary>
    public double[] AlphasCumprodPrev { get; }
    /// <summary>β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t).</summary>
    public double[] PosteriorVariance { get; }
    /// <summary>log β̃_t with the t = 0 entry replaced by t = 1's (it is 0).</summary>
    public double[] PosteriorLogVarianceClipped { get; }
    /// <summary>Coefficient of x̂_0 in the posterior mean.</summary>
    public double[] PosteriorMeanCoef1 { get; }
    /// <summary>Coefficient of x_t in the posterior mean.</summary>
    public double[] PosteriorMeanCoef2 { get; }
    /// <summary>Spaced step index → original timestep (what the model sees).</summary>
    public int[] TimestepMap { get; }
    /// <summary>How the variance is obtained.</summary>
    public VarianceType VarianceType { get; }
    /// <summary>Steps of the underlying schedule (1000).</summary>
    public int OriginalSteps { get; }
    /// <summary>Steps of this (possibly respaced) process.</summary>
    public int NumTimesteps => Betas.Length;

    /// <summary>
    /// The official linear schedule of <paramref name="steps"/> steps, respaced to the timesteps chosen
    /// by <paramref name="respacing"/> (see <see cref="SpaceTimesteps"/>; empty = no respacing).
    /// </summary>
    public static GaussianDiffusion Create(int steps = 1000, string respacing = "", VarianceType varianceType = VarianceType.FixedLarge)
    {
        if (steps < 2) throw new ArgumentOutOfRangeException(nameof(steps), $"a diffusion needs at least 2 steps, got {steps}.");
        double scale = 1000.0 / steps, start = scale * 0.0001, end = scale * 0.02;
        var betas = Enumerable.Range(0, steps).Select(i => start + (end - start) * i / (steps - 1)).ToArray();
        if (string.IsNullOrEmpty(respacing)) return new GaussianDiffusion(betas, Enumerable.Range(0, steps).ToArray(), varianceType, steps);

        var use = SpaceTimesteps(steps, respacing);
        double lastAlphaCumprod = 1.0, acc = 1.0;
        var newBetas = new List<double>();
        var map = new List<int>();
        for (int i = 0; i < steps; i++)
        {
            acc *= 1 - betas[i];
            if (!use.Contains(i)) continue;
            newBetas.Add(1 - acc / lastAlphaCumprod);
            lastAlphaCumprod = acc;
            map.Add(i);
        }
        return new GaussianDiffusion(newBetas.ToArray(), map.ToArray(), varianceType, steps);
    }

    /// <summary>
    /// The official <c>space_timesteps</c>: <paramref name="sectionCounts"/> is "N" or comma-separated
    /// counts "10,15,20" (the schedule is cut into equal sections, each strided evenly), or "ddimN"
    /// (a fixed integer stride giving exactly N steps, as DDIM uses).
    /// </summary>
    public static SortedSet<int> SpaceTimesteps(int numTimesteps, string sectionCounts)
    {
        if (sectionCounts.StartsWith("ddim", StringComparison.Ordinal))
        {
            int desired = int.Parse(sectionCounts[4..], System.Globalization.CultureInfo.InvariantCulture);
            for (int stride = 1; stride < numTimesteps; stride++)
            {
                var set = new SortedSet<int>(Enumerable.Range(0, (numTimesteps + stride - 1) / stride).Select(k => k * stride));
                if (set.Count == desired) return set;
            }
            throw new ArgumentException($"cannot create exactly {desired} steps with an integer stride from {numTimesteps}.", nameof(sectionCounts));
        }
        var counts = sectionCounts.Split(',').Select(s => int.Parse(s.Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        int sizePer = numTimesteps / counts.Length, extra = numTimesteps % counts.Length, startIdx = 0;
        var all = new SortedSet<int>();
        for (int i = 0; i < counts.Length; i++)
        {
            int size = sizePer + (i < extra ? 1 : 0);
            if (size < counts[i]) throw new ArgumentException($"cannot divide a section of {size} steps into {counts[i]}.", nameof(sectionCounts));
            double frac = counts[i] <= 1 ? 1 : (double)(size - 1) / (counts[i] - 1);
            double cur = 0;
            for (int k = 0; k < counts[i]; k++)
            {
                all.Add(startIdx + (int)Math.Round(cur, MidpointRounding.ToEven));
                cur += frac;
            }
            startIdx += size;
        }
        return all;
    }

    /// <summary>x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε for per-sample spaced step indices <paramref name="t"/> (int64 <c>[N]</c>).</summary>
    public Tensor QSample(Tensor x0, Tensor t, Tensor noise)
    {
        using var scope = torch.NewDisposeScope();
        var a = Gather(AlphasCumprod.Select(Math.Sqrt).ToArray(), t, x0);
        var s = Gather(AlphasCumprod.Select(v => Math.Sqrt(1 - v)).ToArray(), t, x0);
        return (a * x0 + s * noise).MoveToOuterDisposeScope();
    }

    /// <summary>x̂_0 = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε at a single spaced step.</summary>
    public Tensor PredictXStart(Tensor xt, int step, Tensor eps)
    {
        double ac = AlphasCumprod[step];
        return xt * Math.Sqrt(1 / ac) - eps * Math.Sqrt(1 / ac - 1);
    }

    /// <summary>ε from x_t and x̂_0 at a single spaced step (the official <c>_predict_eps_from_xstart</c>).</summary>
    public Tensor PredictEps(Tensor xt, int step, Tensor xStart)
    {
        double ac = AlphasCumprod[step];
        return (xt * Math.Sqrt(1 / ac) - xStart) / Math.Sqrt(1 / ac - 1);
    }

    /// <summary>Per-sample values of a schedule array, shaped to broadcast over <paramref name="like"/>.</summary>
    private static Tensor Gather(double[] values, Tensor t, Tensor like)
    {
        using var scope = torch.NewDisposeScope();
        var table = torch.tensor(values, dtype: ScalarType.Float64, device: like.device);
        var v = table.index_select(0, t).to(like.dtype);
        return v.reshape([t.shape[0], .. Enumerable.Repeat(1L, (int)like.Dimensions - 1)]).MoveToOuterDisposeScope();
    }
}
