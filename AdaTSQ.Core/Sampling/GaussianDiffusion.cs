using AdaTSQ.Models.DiT;
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
    /// by <paramref name="respacing"/> (see <see cref="SpaceTimesteps"/>; empty = no respacing), with
    /// the variance <paramref name="varianceType"/> (default <see cref="VarianceType.FixedLarge"/>, right
    /// for models without learned sigma). For a DiT prefer <see cref="For"/>, which picks the variance
    /// from <see cref="DiTConfig.LearnSigma"/>: the samplers refuse a learn-sigma model (2·C output
    /// channels) on a fixed-variance diffusion with <see cref="ModelOutputMismatchException"/>.
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
    /// The diffusion the official <c>create_diffusion(timestep_respacing, learn_sigma)</c> builds for a DiT
    /// of configuration <paramref name="config"/>: the linear schedule of <paramref name="steps"/> steps
    /// respaced by <paramref name="respacing"/>, with <see cref="VarianceType.LearnedRange"/> when the model
    /// learns its variance (<see cref="DiTConfig.LearnSigma"/>, the official default) and
    /// <see cref="VarianceType.FixedLarge"/> otherwise.
    /// </summary>
    public static GaussianDiffusion For(DiTConfig config, string respacing = "", int steps = 1000)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Create(steps, respacing, config.LearnSigma ? VarianceType.LearnedRange : VarianceType.FixedLarge);
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

    /// <summary>
    /// The official <c>p_mean_variance</c> at spaced step <paramref name="step"/>, given the model's
    /// prediction <paramref name="modelOutput"/> for <paramref name="x"/> = x_t <c>[N, C, …]</c> (after
    /// guidance, if any): ε in the first C channels and, for <see cref="VarianceType.LearnedRange"/>, the
    /// variance values v ∈ [−1, 1] in the next C. Returns the mean and (log) variance of
    /// p(x_{t−1} | x_t) and the predicted x̂_0 (clamped to [−1, 1] when <paramref name="clipDenoised"/>, before
    /// the mean is formed), all shaped like <paramref name="x"/>:
    /// <code>
    /// x̂_0   = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε            (then clamp if clipDenoised)
    /// mean  = coef1_t·x̂_0 + coef2_t·x_t                  (the posterior mean q(x_{t−1} | x_t, x̂_0))
    /// log σ² = ((v+1)/2)·log β_t + (1 − (v+1)/2)·log β̃_t  (LearnedRange; β̃ clipped at t = 0)
    /// log σ² = log β_t, with β̃_1 at t = 0                  (FixedLarge)
    /// log σ² = log β̃_t clipped, σ² = β̃_t                  (FixedSmall)
    /// </code>
    /// </summary>
    /// <exception cref="ModelOutputMismatchException">The prediction has the wrong number of channels for the variance type.</exception>
    /// <exception cref="ArgumentException">The prediction's batch or spatial shape is not x's, or <paramref name="step"/> is out of range.</exception>
    public MeanVariance PMeanVariance(Tensor modelOutput, Tensor x, int step, bool clipDenoised)
    {
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentNullException.ThrowIfNull(x);
        if (step < 0 || step >= NumTimesteps) throw new ArgumentOutOfRangeException(nameof(step), $"step {step} of a {NumTimesteps}-step diffusion.");
        if (x.Dimensions < 2 || modelOutput.Dimensions != x.Dimensions || modelOutput.shape[0] != x.shape[0] || !modelOutput.shape[2..].SequenceEqual(x.shape[2..]))
            throw new ArgumentException($"the model output [{string.Join(", ", modelOutput.shape)}] does not match x_t [{string.Join(", ", x.shape)}] outside the channels.", nameof(modelOutput));
        long c = x.shape[1];
        long expected = VarianceType == VarianceType.LearnedRange ? 2 * c : c;
        if (modelOutput.shape[1] != expected) throw new ModelOutputMismatchException(VarianceType, c, modelOutput.shape[1]);
        using var scope = torch.NewDisposeScope();
        Tensor logVariance, variance;
        if (VarianceType == VarianceType.LearnedRange)
        {
            logVariance = LearnedLogVariance(step, modelOutput[.., (int)c..]);
            variance = logVariance.exp();
        }
        else
        {
            logVariance = torch.full(x.shape, FixedLogVariance(step), dtype: x.dtype, device: x.device);
            double fixedVariance = VarianceType == VarianceType.FixedSmall ? PosteriorVariance[step] : step == 0 ? PosteriorVariance[Math.Min(1, NumTimesteps - 1)] : Betas[step];
            variance = torch.full(x.shape, fixedVariance, dtype: x.dtype, device: x.device);
        }
        var xStart = PredictXStart(x, step, c == modelOutput.shape[1] ? modelOutput : modelOutput[.., ..(int)c]);
        if (clipDenoised) xStart = xStart.clamp(-1, 1);
        var mean = xStart * PosteriorMeanCoef1[step] + x * PosteriorMeanCoef2[step];
        return new MeanVariance(mean.MoveToOuterDisposeScope(), variance.MoveToOuterDisposeScope(), logVariance.MoveToOuterDisposeScope(), xStart.MoveToOuterDisposeScope());
    }

    /// <summary>log σ² of a learned-range variance from the model's values v ∈ [−1, 1] at a spaced step.</summary>
    internal Tensor LearnedLogVariance(int step, Tensor varValues)
    {
        double minLog = PosteriorLogVarianceClipped[step], maxLog = Math.Log(Betas[step]);
        var frac = (varValues + 1) / 2;
        return frac * maxLog + (1 - frac) * minLog;
    }

    /// <summary>log σ² of a fixed variance type at a spaced step (not for <see cref="VarianceType.LearnedRange"/>).</summary>
    internal double FixedLogVariance(int step) => VarianceType switch
    {
        VarianceType.FixedSmall => PosteriorLogVarianceClipped[step],
        // σ² = β_t, except at t = 0 where the posterior variance of step 1 is used (official FIXED_LARGE).
        VarianceType.FixedLarge => Math.Log(step == 0 ? PosteriorVariance[Math.Min(1, NumTimesteps - 1)] : Betas[step]),
        _ => throw new InvalidOperationException($"{VarianceType} is not a fixed variance."),
    };

    /// <summary>Per-sample values of a schedule array, shaped to broadcast over <paramref name="like"/>.</summary>
    private static Tensor Gather(double[] values, Tensor t, Tensor like)
    {
        using var scope = torch.NewDisposeScope();
        var table = torch.tensor(values, dtype: ScalarType.Float64, device: like.device);
        var v = table.index_select(0, t).to(like.dtype);
        return v.reshape([t.shape[0], .. Enumerable.Repeat(1L, (int)like.Dimensions - 1)]).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// What <see cref="GaussianDiffusion.PMeanVariance"/> returns (the official <c>p_mean_variance</c> dict):
/// tensors shaped like x_t. Owns them.
/// </summary>
/// <param name="Mean">Mean of p(x_{t−1} | x_t).</param>
/// <param name="Variance">Its variance σ².</param>
/// <param name="LogVariance">log σ².</param>
/// <param name="PredXStart">The predicted clean sample x̂_0 (clamped when asked).</param>
public sealed record MeanVariance(Tensor Mean, Tensor Variance, Tensor LogVariance, Tensor PredXStart) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Mean.Dispose();
        Variance.Dispose();
        LogVariance.Dispose();
        PredXStart.Dispose();
    }
}
