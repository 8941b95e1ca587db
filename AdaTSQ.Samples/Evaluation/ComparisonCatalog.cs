using System.Globalization;
using AdaTSQ.Evaluation.Comparison;
using AdaTSQ.Quantization;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// The methods of <c>compare</c>: each name maps to an <c>evaluate</c> setting string with <c>{bits}</c> standing for
/// the bit setting (<c>w4a4-g64-ag64</c>), so a method is configured exactly as <c>evaluate</c> configures that string
/// (<see cref="SettingCatalog"/>). Adding a method is one line.
/// </summary>
internal static class ComparisonCatalog
{
    /// <summary>Method name → setting template, in the table's row order.</summary>
    public static IReadOnlyList<(string Name, string Template, string Description)> Methods { get; } =
    [
        ("rtn", "rtn-{bits}", "round-to-nearest"),
        ("smoothquant", "rtn-{bits}-sq0.5", "SmoothQuant α 0.5, then RTN"),
        ("gptq", "gptq-{bits}", "GPTQ"),
        ("quarot", "rtn-{bits}-rot", "QuaRot: randomized Hadamard rotation of each layer's input, then RTN"),
        ("quarot-gptq", "gptq-{bits}-rot", "QuaRot rotation, then GPTQ"),
        ("svdquant", "rtn-{bits}-svd32", "SVDQuant: searched smoothing, rank-32 full-precision branch, RTN on the residual"),
        ("qdit", "qdit-{bits}", "Q-DiT: per-layer group sizes by an evolutionary search (trajectory MSE instead of the paper's FID), GPTQ weights, dynamic activations grouped as the weights"),
        ("ptq4dit", "ptq4dit-{bits}", "PTQ4DiT: channel salience balancing with Spearman-calibrated activation salience, folded offline into adaLN and the value rows, then RTN"),
        ("ptq4dit-gptq", "gptq-{bits}-ptq4dit", "PTQ4DiT's balancing, then GPTQ"),
        ("viditq", "viditq-{bits}", "ViDiT-Q: static-dynamic channel balancing (smoothing per timestep group, then Hadamard rotation), RTN weights, dynamic activations at the column's granularity; no mixed precision"),
        ("htg", "htg-{bits}", "HTG: per-channel shift per hierarchical timestep group (G = steps/10) and EMA channel scale, in each layer (bias b + W·z_g per group), RTN weights"),
        ("htg-gptq", "htg-{bits}-gptq", "HTG's shift and scale, then GPTQ (Hessian of the scaled, unshifted inputs)"),
        ("d2quant", "d2quant-{bits}", "D²Quant (weight-only): dual-scale quantizer on the MLP's fc2 (per-input-channel scale beside the group scale, 15 alternating rounds), RTN elsewhere, deviation-aware correction of the post-attention norm's mean into adaLN's shift_mlp; W<bits>A16 settings only"),
        ("tqdit", "tqdit-{bits}", "TQ-DiT: per-tensor weight steps (qkv per part) and static per-tensor activation steps per uniform timestep group (TGQ), searched on a grid by the loss-gradient-weighted output error; no MRQ, no attention matmuls; per-tensor only, so not at group-wise bit settings"),
        ("adatsq", "gptqf-{bits}", "AdaTSQ's Fisher-guided calibration (GPTQ + temporal-Fisher-weighted Hessians) with static bits; the bit-width search is issue 16's"),
        ("gptq-svd", "gptq-{bits}-svd32", "GPTQ on SVDQuant's residual (searched smoothing, rank-32 full-precision branch): the control of adatsq-svd without the Fisher weighting"),
        ("adatsq-svd", "gptqf-{bits}-svd32", "AdaTSQ's Fisher-guided calibration on SVDQuant's residual (searched smoothing, rank-32 branch, Fisher-weighted GPTQ), static bits: the best AdaTSQ configuration of issue 13"),
    ];

    /// <summary>The methods that quantize weights only: they exist only at bit settings whose activations are at 16 bits.</summary>
    public static IReadOnlySet<string> WeightOnlyMethods { get; } = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "d2quant" };

    /// <summary>
    /// The methods run when <c>--methods</c> is not given: the paper's Table 1 rows that exist here (RTN, SVDQuant,
    /// ViDiT-Q, Q-DiT, QuaRot, SmoothQuant), GPTQ and PTQ4DiT, AdaTSQ's best configuration (<c>adatsq-svd</c>, the
    /// default judge) with its control without Fisher (<c>gptq-svd</c>), and AdaTSQ's Fisher-guided GPTQ alone.
    /// </summary>
    public static IReadOnlyList<string> DefaultMethods { get; } =
        ["rtn", "svdquant", "adatsq-svd", "gptq-svd", "viditq", "qdit", "quarot", "smoothquant", "gptq", "ptq4dit", "adatsq"];

    /// <summary>The method the others are judged against when <c>--judge</c> is not given.</summary>
    public const string DefaultJudge = "adatsq-svd";

    /// <summary>The setting-string form of a bit setting: <c>w8a8</c>, <c>w4a4-g64-ag64</c>.</summary>
    /// <exception cref="ArgumentException">The specs have no setting-string form (asymmetric, clipped, static per-token …).</exception>
    public static string BitsToken(BitSetting bits)
    {
        ArgumentNullException.ThrowIfNull(bits);
        var (w, a) = (bits.Weights, bits.Activations);
        if (!w.Symmetric || !a.Symmetric || w.ClipRatio != 1 || a.ClipRatio != 1 || w.Granularity is not (QuantGranularity.PerChannel or QuantGranularity.PerGroup)
            || (a.IsEnabled && a.Granularity is not (QuantGranularity.PerToken or QuantGranularity.PerGroup or QuantGranularity.PerTensor)))
            throw new ArgumentException($"bit setting {bits.Describe()} has no evaluate setting string (symmetric, unclipped, per-channel or per-group weights and per-token, per-group or static per-tensor activations only).", nameof(bits));
        string token = string.Create(CultureInfo.InvariantCulture, $"w{w.Bits}a{a.Bits}");
        if (w.Granularity == QuantGranularity.PerGroup) token += string.Create(CultureInfo.InvariantCulture, $"-g{w.GroupSize}");
        if (a.IsEnabled && a.Granularity == QuantGranularity.PerGroup) token += string.Create(CultureInfo.InvariantCulture, $"-ag{a.GroupSize}");
        if (a.IsEnabled && !a.Dynamic) token += "-static";
        return token;
    }

    /// <summary>The evaluate setting string of <paramref name="method"/> at <paramref name="bits"/>, e.g. <c>gptq-w4a4-g64-ag64</c>.</summary>
    /// <exception cref="ArgumentException">The method is not in the catalog.</exception>
    public static string SettingString(string method, BitSetting bits) => Find(method).Template.Replace("{bits}", BitsToken(bits), StringComparison.Ordinal);

    /// <summary>
    /// The <see cref="Setting"/> of <paramref name="method"/> at <paramref name="bits"/>, parsed by <see cref="SettingCatalog.ParseSetting"/>;
    /// its specs are checked against the bit setting's. One difference is allowed: a method whose activations are static per
    /// tensor (TQ-DiT) in place of the bit setting's dynamic per-token ones at the same bits — a coarser, calibrated grid,
    /// never a finer one.
    /// </summary>
    /// <exception cref="ArgumentException">The method is unknown, or its template changes the bit setting's specs.</exception>
    public static Setting SettingFor(string method, BitSetting bits)
    {
        var setting = SettingCatalog.ParseSetting(SettingString(method, bits));
        bool staticInsteadOfPerToken = bits.Activations is { IsEnabled: true, Granularity: QuantGranularity.PerToken, Dynamic: true }
            && setting.Activations == bits.Activations with { Granularity = QuantGranularity.PerTensor, Dynamic = false };
        if (setting.Weights != bits.Weights || (setting.Activations != bits.Activations && !staticInsteadOfPerToken))
            throw new ArgumentException($"method {method}'s setting {setting.Name} quantizes with weights {setting.Weights}, activations {setting.Activations}, not {bits.Describe()}.");
        return setting;
    }

    /// <summary>The catalog entry named <paramref name="method"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No such method; the message lists the catalog.</exception>
    public static (string Name, string Template, string Description) Find(string method) =>
        Methods.FirstOrDefault(m => string.Equals(m.Name, method?.Trim(), StringComparison.OrdinalIgnoreCase)) is { Name: not null } entry ? entry
        : throw new ArgumentException($"method '{method}' is not in the compare catalog; methods: {string.Join(", ", Methods.Select(m => m.Name))}.", nameof(method));
}
