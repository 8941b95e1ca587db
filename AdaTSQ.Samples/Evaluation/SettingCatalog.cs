using System.Globalization;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.D2Quant;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.Htg;
using AdaTSQ.Methods.QDit;
using AdaTSQ.Methods.Ptq4Dit;
using AdaTSQ.Methods.ViDiTQ;
using AdaTSQ.Methods.QuaRot;
using AdaTSQ.Methods.SvdQuant;
using AdaTSQ.Methods.TqDit;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// One evaluated setting: method (rtn, gptq, gptqf = GPTQ + Fisher-weighted calibration), specs, smoothing, and the parts of the other methods
/// (<c>TqDitMrq</c>: tqdit's -mrq, MRQ after GELU on fc2's input). gptqf's Fisher:
/// <paramref name="FisherSpace"/> and <paramref name="FisherInputs"/> choose the estimate (<see cref="FisherVariant"/>),
/// <paramref name="FisherTemperature"/> and <paramref name="FisherNormalization"/> override the command's weighting (null: keep it).
/// </summary>
internal sealed record Setting(string Name, string Method, QuantSpec Weights, QuantSpec Activations, double? SmoothAlpha, double? FisherTemperature = null, int RangeGroups = 0, FisherUse? FisherUse = null, FisherLossSpace FisherSpace = FisherLossSpace.Noise, int? SvdRank = null, bool Rotate = false, int RotationBlock = 0, bool Ptq4Dit = false, double? MixedPrecisionBudget = null, HtgOptions? Htg = null, bool HtgGptq = false, D2QuantParts D2Quant = default, int? NestedParentBits = null, bool TqDitMrq = false, FisherNormalization? FisherNormalization = null, FisherInputs FisherInputs = FisherInputs.QSample)
{
    /// <summary>Which temporal Fisher estimate a gptqf setting uses.</summary>
    public FisherVariant Fisher => new(FisherSpace, FisherInputs);
}

/// <summary>
/// One temporal Fisher estimate a command makes (once, shared by the gptqf settings that use it): the loss space and
/// where the loss is taken (q-samples of x0 or the FP sampler's own trajectories).
/// </summary>
/// <param name="Space">ε loss or clean-image loss (-x0).</param>
/// <param name="Inputs">q-samples of x0, or the FP sampler's trajectories (-traj).</param>
internal readonly record struct FisherVariant(FisherLossSpace Space, FisherInputs Inputs)
{
    /// <summary>The file-name suffix of the estimate's outputs: "" for the default, else "-traj", "-x0", "-traj-x0".</summary>
    public string Suffix => (Inputs == FisherInputs.Trajectory ? "-traj" : "") + (Space == FisherLossSpace.CleanImage ? "-x0" : "");
}

/// <summary>The parts of a d2quant setting (ablations): -nodsq, -nodac, -dsqall (DSQ on every layer, not only fc2).</summary>
/// <param name="NoDsq">DSQ off (the layers get RTN).</param>
/// <param name="NoDac">DAC off.</param>
/// <param name="DsqAll">DSQ on every quantized layer.</param>
internal readonly record struct D2QuantParts(bool NoDsq, bool NoDac, bool DsqAll);

/// <summary>
/// What configuring a <see cref="Setting"/> needs from the command that runs it: the layers, the seed, the
/// calibration data, the temporal Fisher (gptqf) and the Fisher options shared by every gptqf setting.
/// </summary>
internal sealed record SettingServices
{
    /// <summary>Glob of the quantized layers (e.g. <c>blocks.*</c>).</summary>
    public required string Layers { get; init; }

    /// <summary>Seed of SVDQuant's randomized SVD, QuaRot's rotation and the Fisher calibration.</summary>
    public required long Seed { get; init; }

    /// <summary>The calibration data of a setting that needs calibration (a new source per call).</summary>
    public required Func<Setting, ICalibrationSource> Calibration { get; init; }

    /// <summary>Progress of the calibration of a setting (null: the builder keeps what it has).</summary>
    public Func<Setting, IProgress<QuantizationProgress>?>? CalibrationProgress { get; init; }

    /// <summary>The temporal Fisher of a loss space and inputs (gptqf settings only; null when no gptqf setting is run).</summary>
    public Func<FisherVariant, TemporalFisher>? Fisher { get; init; }

    /// <summary>Fisher weighting of gptqf settings (a setting's -t&lt;tau&gt; overrides the temperature, -nlog / -nrank the normalization).</summary>
    public FisherWeighting Weighting { get; init; } = new();

    /// <summary>How gptqf uses the Fisher (a setting's -is overrides it).</summary>
    public FisherUse FisherUse { get; init; } = FisherUse.Weight;

    /// <summary>Share of steps kept by the Fisher's step sampling.</summary>
    public double FisherFraction { get; init; } = 0.25;

    /// <summary>
    /// qdit settings: the model and the trajectories Q-DiT's group-size search scores candidates on (owned by the
    /// command, shared by every qdit setting; null when no qdit setting is run).
    /// </summary>
    public Func<(TorchSharp.torch.nn.Module Model, SearchTrajectories Trajectories)>? QDitSearch { get; init; }

    /// <summary>
    /// ptq4dit settings: the model PTQ4DiT's balancing is folded into (its parameters change until the balancing is
    /// undone; null when no ptq4dit setting is run); d2quant settings: the model whose adaLN shift_mlp biases take DAC's
    /// correction (reverted by the result's <c>Restore()</c>).
    /// </summary>
    public TorchSharp.torch.nn.Module? Model { get; init; }

    /// <summary>
    /// viditq settings with mixed precision (-mp): the trajectories its sensitivities are measured on and the extra
    /// metrics beside the two frequency-band MSEs (e.g. the judge classifier's); owned by the command.
    /// </summary>
    public Func<(SearchTrajectories Trajectories, IReadOnlyList<ISensitivityMetric> ExtraMetrics)>? ViDiTQMixedPrecision { get; init; }
}

/// <summary>
/// What a configured setting owns beyond the builder: PTQ4DiT's balancing, TQ-DiT's recorded calibration calls. The
/// result's <c>Restore()</c> already reverts PTQ4DiT's fold (<c>IModelChangingTransform</c>); disposing this after it frees
/// whatever is left and, should the fold still be in the model (a run that never got a result), undoes it.
/// </summary>
internal sealed class SettingCleanup : IDisposable
{
    private Ptq4DitBalancing? _balancing;
    private TqDitCalibrationCalls? _tqDitCalls;

    internal SettingCleanup(Ptq4DitBalancing? balancing, TqDitCalibrationCalls? tqDitCalls = null)
    {
        _balancing = balancing;
        _tqDitCalls = tqDitCalls;
    }

    /// <summary>Undoes a fold that is still in the model and frees the balancing and the recorded calls; call after <c>Restore()</c>.</summary>
    public void Dispose()
    {
        if (_balancing is { IsApplied: true }) _balancing.Undo();
        _balancing?.Dispose();
        _balancing = null;
        _tqDitCalls?.Dispose();
        _tqDitCalls = null;
    }
}

/// <summary>
/// The setting strings of <c>evaluate</c> and <c>compare</c> (<c>rtn-w4a4-g64-ag64-svd32</c>): <see cref="ParseSetting"/>
/// turns one into a <see cref="Setting"/>, <see cref="Configure"/> puts it on a <see cref="QuantizationBuilder"/>. Both
/// commands configure through here, so a setting means the same in both.
/// </summary>
internal static class SettingCatalog
{
    /// <summary>
    /// Whether the setting needs the builder's calibration data (anything beyond RTN with dynamic activations; d2quant needs
    /// no statistics, its DAC measures on its own source).
    /// </summary>
    internal static bool NeedsCalibration(Setting setting) =>
        setting.Ptq4Dit || setting.Method is not ("rtn" or "d2quant") || setting.SmoothAlpha is not null || setting.SvdRank is not null || setting.Rotate || !setting.Activations.Dynamic;

    /// <summary>
    /// Configures <paramref name="builder"/> (which has the model, and may have a logger and progress) for
    /// <paramref name="setting"/>: layers, specs, smoothing, SVDQuant, rotation, static range groups, calibration data,
    /// Fisher calibration, GPTQ, in that order.
    /// </summary>
    internal static QuantizationBuilder Configure(QuantizationBuilder builder, Setting setting, SettingServices services) =>
        Configure(builder, setting, services, out _);

    /// <summary>
    /// <see cref="Configure(QuantizationBuilder, Setting, SettingServices)"/>, and what the setting owns beyond the builder:
    /// PTQ4DiT folds its balancing into the model (adaLN modulation, value rows), which the result's <c>Restore()</c>
    /// reverts; dispose <paramref name="cleanup"/> after it to free the balancing.
    /// </summary>
    internal static QuantizationBuilder Configure(QuantizationBuilder builder, Setting setting, SettingServices services, out SettingCleanup cleanup)
    {
        cleanup = new SettingCleanup(null);
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(setting);
        ArgumentNullException.ThrowIfNull(services);
        long seed = services.Seed;
        builder.Layers(services.Layers).Weights(setting.Weights).Activations(setting.Activations);
        if (setting.SmoothAlpha is { } alpha) builder.SmoothActivations(alpha);
        if (setting.SvdRank is { } rank) builder.UseSvdQuant(new SvdQuantOptions { Rank = rank, Seed = seed });
        if (setting.Rotate)
            builder.RotateInputs(setting.RotationBlock > 0
                ? new QuaRotOptions { Seed = checked((int)seed), Construction = HadamardConstruction.BlockDiagonal, BlockSize = setting.RotationBlock }
                : new QuaRotOptions { Seed = checked((int)seed) });
        if (setting.RangeGroups > 1) builder.StaticRangesPerTimestepGroup(setting.RangeGroups);
        if (setting.Method == "viditq")
        {
            // ViDiT-Q: channel balancing per timestep group, then rotation; -mp adds the metric-decoupled mixed precision.
            var mixed = setting.MixedPrecisionBudget is null ? ((SearchTrajectories, IReadOnlyList<ISensitivityMetric>)?)null
                : (services.ViDiTQMixedPrecision ?? throw new InvalidOperationException($"setting {setting.Name} needs ViDiT-Q's sensitivity trajectories; none were provided."))();
            builder.UseViDiTQ(new ViDiTQOptions
            {
                Rotation = new QuaRotOptions { Seed = checked((int)seed) },
                MixedPrecision = setting.MixedPrecisionBudget is { } budget ? new ViDiTQMixedPrecisionOptions
                {
                    AverageWeightBits = budget,
                    Metrics = [FrequencyBandMseMetric.Structure, FrequencyBandMseMetric.Detail, .. mixed!.Value.Item2],
                } : null,
            }, mixed?.Item1);
        }
        if (setting.Htg is { } htg)
        {
            // HTG: shift per hierarchical timestep group and channel scale in each layer with quantized activations; -gptq: GPTQ weights.
            builder.UseHtg(htg);
            if (setting.HtgGptq) builder.UseHessianOptimization();
        }
        if (setting.Ptq4Dit)
        {
            // PTQ4DiT: balancing folded into the model before the capture; undone by the cleanup after Restore().
            var balancing = new Ptq4DitBalancing(services.Model ?? throw new InvalidOperationException($"setting {setting.Name} needs the model for PTQ4DiT's fold; none was provided."));
            cleanup = new SettingCleanup(balancing);
            builder.UsePtq4Dit(balancing);
        }
        if (setting.Method == "d2quant")
        {
            // D²Quant, weight-only: DSQ on fc2 (or every layer), RTN elsewhere, DAC measured on the FP sampler's calibration data.
            var parts = setting.D2Quant;
            builder.UseD2Quant(new D2QuantOptions { Dsq = !parts.NoDsq, Dac = !parts.NoDac, DsqLayers = parts.DsqAll ? ["*"] : ["*mlp.fc2"] },
                services.Model ?? throw new InvalidOperationException($"setting {setting.Name} needs the model for D²Quant's DAC; none was provided."),
                parts.NoDac ? null : services.Calibration(setting));
            if (services.CalibrationProgress?.Invoke(setting) is { } progress) builder.WithProgress(progress);
        }
        if (NeedsCalibration(setting))
        {
            // Calibration runs the FP sampler on its own seeds (never the evaluation's noise).
            builder.CalibrationData(services.Calibration(setting));
            if (services.CalibrationProgress?.Invoke(setting) is { } progress) builder.WithProgress(progress);
        }
        if (setting.Method == "tqdit")
        {
            // TQ-DiT: the FP model's calls along the calibration trajectories are recorded now (before quantization) and
            // replayed with gradients by its search; they also replace the calibration data set above.
            var dit = services.Model as TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>
                ?? throw new InvalidOperationException($"setting {setting.Name} needs the DiT (x, t, y) to record TQ-DiT's calibration calls; none was provided.");
            var calls = TqDitCalibrationCalls.Record(dit, services.Calibration(setting));
            cleanup = new SettingCleanup(null, calls);
            builder.UseTqDit(calls, TqDitOptionsFor(setting, seed));
        }
        if (setting.Method == "gptqf")
        {
            var fisher = (services.Fisher ?? throw new InvalidOperationException($"setting {setting.Name} needs a temporal Fisher; none was provided."))(setting.Fisher);
            var weighting = WeightingOf(setting, services.Weighting);
            builder.UseFisherCalibration(fisher, new FisherCalibrationOptions { Weighting = weighting, Use = setting.FisherUse ?? services.FisherUse, StepFraction = services.FisherFraction, Seed = seed });
        }
        if (setting.Method is "gptq" or "gptqf") builder.UseHessianOptimization();
        // -nest<bits>: the weight codes are the rounded top bits of the <bits>-bit version the quantizer makes (issue 16).
        if (setting.NestedParentBits is { } parentBits) builder.UseNestedWeights(parentBits);
        if (setting.Method == "qdit")
        {
            // Q-DiT: the per-layer group-size search (GPTQ weights), scored on the command's search trajectories.
            var (model, trajectories) = (services.QDitSearch ?? throw new InvalidOperationException($"setting {setting.Name} needs Q-DiT's search trajectories; none were provided."))();
            builder.UseQDit(model, trajectories, new QDitOptions { Seed = checked((int)seed) });
        }
        return builder;
    }

    /// <summary>TQ-DiT's options of a tqdit setting: the seed of its row sampling and -mrq (MRQ after GELU on fc2's input).</summary>
    internal static TqDitOptions TqDitOptionsFor(Setting setting, long seed)
    {
        ArgumentNullException.ThrowIfNull(setting);
        return new TqDitOptions { Seed = seed, PostGeluMultiRegion = setting.TqDitMrq };
    }

    /// <summary>The Fisher weighting of a gptqf setting: the command's, with the setting's temperature and normalization if it sets them.</summary>
    internal static FisherWeighting WeightingOf(Setting setting, FisherWeighting shared)
    {
        ArgumentNullException.ThrowIfNull(setting);
        ArgumentNullException.ThrowIfNull(shared);
        var weighting = setting.FisherTemperature is { } tau ? shared with { Temperature = tau } : shared;
        return setting.FisherNormalization is { } normalization ? weighting with { Normalization = normalization } : weighting;
    }

    /// <summary>
    /// "rtn-w4a8", "gptq-w4a8-g32", "gptqf-w4a4-sq" → method, weight and activation specs, smoothing
    /// (-sq = SmoothQuant α 0.5, -sq0.7 = α 0.7). gptqf's Fisher: -t&lt;tau&gt; temperature, -nlog / -nrank normalization
    /// (<see cref="FisherNormalization"/>), -x0 clean-image loss, -traj the FP sampler's own trajectories as inputs
    /// (<see cref="FisherInputs.Trajectory"/>), -is importance sampling.
    /// </summary>
    internal static Setting ParseSetting(string setting)
    {
        var parts = setting.ToLowerInvariant().Split('-');
        string[] methods = ["rtn", "gptq", "gptqf", "qdit", "ptq4dit", "viditq", "htg", "d2quant", "tqdit"];
        if (parts.Length < 2 || !methods.Contains(parts[0]) || !parts[1].StartsWith('w') || !parts[1].Contains('a'))
            throw new ArgumentException($"setting '{setting}' is not of the form <method>-w<bits>a<bits>[-g<group>][-ag<group>][-sq[<alpha>]][-svd[<rank>]][-rot|-rotb<block>][-static[<groups>]][-t<tau>][-nlog|-nrank][-traj][-is][-x0][-ptq4dit][-nest<bits>] with method rtn, gptq, gptqf (GPTQ + Fisher calibration), qdit (Q-DiT group-size search, GPTQ) ptq4dit (PTQ4DiT balancing + RTN; -ptq4dit adds it to rtn or gptq) viditq (ViDiT-Q; -mp[<avg weight bits>] adds its mixed precision), htg (HTG shift + scale per timestep group, RTN; -gptq: GPTQ weights, -hg<groups>, -shiftonly / -scaleonly for ablation), d2quant (D²Quant, weight-only: w<bits>a16; -nodsq, -nodac, -dsqall) or tqdit (TQ-DiT: per-tensor searched steps, static activations per timestep group; -mrq: multi-region quantizer on fc2's post-GELU input), e.g. gptq-w4a8 (./run.sh --help).");
        int a = parts[1].IndexOf('a');
        int w = int.Parse(parts[1][1..a], CultureInfo.InvariantCulture), act = int.Parse(parts[1][(a + 1)..], CultureInfo.InvariantCulture);
        int group = 0, rangeGroups = 0, activationGroup = 0;
        int? svdRank = null;
        bool rotate = false;
        int rotationBlock = 0;
        double? smooth = null, temperature = null;
        bool dynamic = true;
        FisherUse? use = null;
        FisherLossSpace space = FisherLossSpace.Noise;
        FisherNormalization? normalization = null;
        var inputs = FisherInputs.QSample;
        bool ptq4dit = parts[0] == "ptq4dit";
        double? mixedPrecision = null;
        bool htg = parts[0] == "htg", htgGptq = false;
        var htgOptions = new HtgOptions();
        var d2quant = default(D2QuantParts);
        int? nestedParent = null;
        bool tqditMrq = false;
        foreach (var extra in parts.Skip(2))
        {
            if (extra.StartsWith("nest", StringComparison.Ordinal) && parts[0] is "rtn" or "gptq" or "gptqf")
            {
                nestedParent = extra.Length > 4 ? int.Parse(extra[4..], CultureInfo.InvariantCulture) : 8;
                if (nestedParent <= w || nestedParent > QuantSpec.MaxBits)
                    throw new ArgumentException($"setting '{setting}': -nest{nestedParent} slices the W{w} codes from a wider version: the parent width must be in [{w + 1}, {QuantSpec.MaxBits}].");
                continue;
            }
            if (htg && extra == "gptq") htgGptq = true;
            else if (htg && extra.StartsWith("hg", StringComparison.Ordinal)) htgOptions = htgOptions with { Groups = int.Parse(extra[2..], CultureInfo.InvariantCulture) };
            else if (htg && extra == "shiftonly") htgOptions = htgOptions with { Scale = false };
            else if (htg && extra == "scaleonly") htgOptions = htgOptions with { Shift = false };
            else if (extra.StartsWith("static", StringComparison.Ordinal))
            {
                dynamic = false;
                rangeGroups = extra.Length > 6 ? int.Parse(extra[6..], CultureInfo.InvariantCulture) : 0;
            }
            else if (extra.StartsWith("svd", StringComparison.Ordinal)) svdRank = extra.Length > 3 ? int.Parse(extra[3..], CultureInfo.InvariantCulture) : 32;
            else if (extra == "rot") rotate = true;
            else if (extra == "ptq4dit" && parts[0] is "rtn" or "gptq") ptq4dit = true;
            else if (extra.StartsWith("rotb", StringComparison.Ordinal)) (rotate, rotationBlock) = (true, int.Parse(extra[4..], CultureInfo.InvariantCulture));
            else if (extra.StartsWith("ag", StringComparison.Ordinal)) activationGroup = int.Parse(extra[2..], CultureInfo.InvariantCulture);
            else if (extra.StartsWith('g')) group = int.Parse(extra[1..], CultureInfo.InvariantCulture);
            else if (extra.StartsWith("sq", StringComparison.Ordinal)) smooth = extra.Length > 2 ? double.Parse(extra[2..], CultureInfo.InvariantCulture) : 0.5;
            else if (extra.StartsWith("mp", StringComparison.Ordinal) && parts[0] == "viditq") mixedPrecision = extra.Length > 2 ? double.Parse(extra[2..], CultureInfo.InvariantCulture) : 5.0;
            else if (extra == "nodsq" && parts[0] == "d2quant") d2quant = d2quant with { NoDsq = true };
            else if (extra == "nodac" && parts[0] == "d2quant") d2quant = d2quant with { NoDac = true };
            else if (extra == "dsqall" && parts[0] == "d2quant") d2quant = d2quant with { DsqAll = true };
            else if (extra == "mrq" && parts[0] == "tqdit") tqditMrq = true;
            else if (extra == "is" && parts[0] == "gptqf") use = FisherUse.Sample;
            else if (extra == "x0" && parts[0] == "gptqf") space = FisherLossSpace.CleanImage;
            // Before -t<tau>: "traj" starts with a t.
            else if (extra == "traj" && parts[0] == "gptqf") inputs = FisherInputs.Trajectory;
            else if (extra is "nlog" or "nrank" && parts[0] == "gptqf")
            {
                if (normalization is not null) throw new ArgumentException($"setting '{setting}': give one Fisher normalization (-nlog or -nrank).");
                normalization = extra == "nlog" ? FisherNormalization.Log : FisherNormalization.Rank;
            }
            else if (extra.StartsWith('t') && parts[0] == "gptqf") temperature = double.Parse(extra[1..], CultureInfo.InvariantCulture);
            else throw new ArgumentException($"setting '{setting}': unknown part '{extra}' (expected g<group>, ag<group>, sq[<alpha>], svd[<rank>], rot, rotb<block>, static[<timestep groups>], t<temperature> / nlog / nrank (Fisher normalization) / traj (Fisher on the FP sampler's trajectories) / is (importance sampling) / x0 (clean-image loss) for gptqf, nodsq / nodac / dsqall for d2quant, mrq for tqdit, nest<parent bits> for rtn / gptq / gptqf).");
        }
        if (parts[0] == "tqdit")
        {
            // TQ-DiT: per-tensor weight steps (qkv per part) and static per-tensor activation steps (per timestep group), all searched.
            if (group > 0 || activationGroup > 0 || smooth is not null || svdRank is not null || rotate || rangeGroups > 0)
                throw new ArgumentException($"setting '{setting}': tqdit quantizes weights and activations per tensor with searched steps and its own timestep groups; drop -g, -ag, -sq, -svd, -rot and -static<groups> (TQ-DiT's settings are W8A8, W6A6, W4A8).");
            dynamic = false;
        }
        var activations = QuantSpec.Activation(act, dynamic);
        if (activationGroup > 0 && activations.IsEnabled)
        {
            if (!dynamic) throw new ArgumentException($"setting '{setting}': per-group activations (ag{activationGroup}) are dynamic; drop -static.");
            activations = activations with { Granularity = QuantGranularity.PerGroup, GroupSize = activationGroup };
        }
        if (tqditMrq && !activations.IsEnabled)
            throw new ArgumentException($"setting '{setting}': -mrq quantizes fc2's post-GELU input; it needs quantized activations (e.g. tqdit-w4a8-mrq).");
        if (parts[0] == "viditq" && (smooth is not null || svdRank is not null || rotate))
            throw new ArgumentException($"setting '{setting}': viditq smooths per timestep group and rotates by itself; drop -sq, -svd and -rot.");
        if (htg && (smooth is not null || svdRank is not null))
            throw new ArgumentException($"setting '{setting}': htg sets the smoothing factors itself (its channel scale); drop -sq and -svd.");
        if (htg && htgOptions.FindProblems() is { Count: > 0 } htgProblems)
            throw new ArgumentException($"setting '{setting}': {string.Join(" ", htgProblems)}");
        if (ptq4dit && (smooth is not null || svdRank is not null || rotate))
            throw new ArgumentException($"setting '{setting}': PTQ4DiT's balancing is not combined with -sq, -svd or -rot here (each rescales or rotates the same inputs).");
        if (parts[0] == "d2quant" && (activations.IsEnabled || smooth is not null || svdRank is not null || rotate))
            throw new ArgumentException($"setting '{setting}': d2quant is weight-only and transforms fc2's input by itself: use w<bits>a16 (e.g. d2quant-w3a16-g128) without -sq, -svd, -rot or -static.");
        return new Setting(setting.ToUpperInvariant(), parts[0], QuantSpec.Weight(w, group), activations, smooth, temperature, rangeGroups, use, space, svdRank, rotate, rotationBlock, ptq4dit, mixedPrecision, htg ? htgOptions : null, htgGptq, d2quant, nestedParent, tqditMrq, normalization, inputs);
    }
}
