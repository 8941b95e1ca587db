using AdaTSQ.Methods.Gptq;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// Options of Q-DiT's automatic quantization granularity allocation (Chen et al., CVPR 2025, arXiv 2406.17343; see
/// <see cref="QDitGroupSearch"/> and docs/qdit.md). The evolutionary parameters have the meaning of the reference code's
/// <c>scripts/evolution.py</c> (<c>population_num</c>, <c>select_num</c>, <c>mutation_num</c>, <c>crossover_num</c>,
/// <c>m_prob</c>, <c>max_epochs</c>); their defaults here are smaller than the reference's (50, 10, 25, 15, 0.1, 20) so that
/// the search on the shipped DiT takes minutes on two CPU cores.
/// </summary>
public sealed record QDitOptions
{
    /// <summary>
    /// The group sizes a layer may take (0 = one scale per output channel, i.e. a group of the whole input dimension K).
    /// Each layer uses those that divide its K (a group equal to K counts as per-channel). Default {32, 64, 96, 128, 192,
    /// 256, 0}: on the shipped DiT (K = 192 or 768) a K = 192 layer chooses from {32, 64, 96, per-channel}. The
    /// reference code searches {32, 64, 128, 192, 288} for DiT-XL/2 (K = 1152).
    /// </summary>
    public IReadOnlyList<int> GroupSizes { get; init; } = [32, 64, 96, 128, 192, 256, 0];

    /// <summary>
    /// The group size of the uniform reference assignment g_ref, used when the builder's weight template is per
    /// channel; a per-group template (<c>Weights(4, groupSize: 128)</c>) sets it instead. It must be one of
    /// <see cref="GroupSizes"/> and divide every searched layer's K. The constraint compares every candidate with the
    /// reference, and the reference is in the first generation (as the reference code's preset <c>[128] * 112</c>).
    /// Default 64.
    /// </summary>
    public int ReferenceGroupSize { get; init; } = 64;

    /// <summary>Which cost a candidate may not exceed relative to the uniform reference. Default <see cref="QDitConstraint.ScaleOperations"/>.</summary>
    public QDitConstraint Constraint { get; init; } = QDitConstraint.ScaleOperations;

    /// <summary>
    /// True (default, as the reference code): a layer's dynamic activations use the same group size as its weights (per
    /// token × group; per token for per-channel weights). False: the builder's activation template as given.
    /// </summary>
    public bool ActivationGroupsFollowWeights { get; init; } = true;

    /// <summary>Candidates per generation (reference: <c>population_num</c> 50). Default 12.</summary>
    public int Population { get; init; } = 12;

    /// <summary>
    /// Generations of offspring after the first, random one (reference: <c>max_epochs</c> 20, its script 10). At most
    /// <see cref="Population"/> × (1 + Generations) candidates are evaluated. Default 5.
    /// </summary>
    public int Generations { get; init; } = 5;

    /// <summary>How many of the best candidates found so far are parents (reference: <c>select_num</c> 10). Default 4.</summary>
    public int SelectCount { get; init; } = 4;

    /// <summary>Children made by mutation per generation (reference: <c>mutation_num</c> 25). Default 5.</summary>
    public int MutationCount { get; init; } = 5;

    /// <summary>Children made by uniform crossover per generation (reference: <c>crossover_num</c> 15). Default 4.</summary>
    public int CrossoverCount { get; init; } = 4;

    /// <summary>Probability that a mutation redraws one layer's group size (reference: <c>m_prob</c> 0.1). Default 0.1.</summary>
    public double MutationProbability { get; init; } = 0.1;

    /// <summary>
    /// Draws per wanted child before a generation gives up filling its quota (illegal and already seen candidates are
    /// redrawn; reference: 10 for mutation and crossover, unbounded for random ones). Default 10.
    /// </summary>
    public int AttemptsPerChild { get; init; } = 10;

    /// <summary>
    /// True (default): on the CPU the search runs the candidates on the integer kernels (<c>IntegerLinearKernel</c>, not
    /// strict: a call they cannot run falls back to fake quantization), which compute what fake quantization simulates
    /// up to float rounding and several times faster. A layer that already has a kernel keeps it. False: fake quantization.
    /// </summary>
    public bool SearchOnIntegerKernels { get; init; } = true;

    /// <summary>Seed of every random choice of the search. Default 0.</summary>
    public int Seed { get; init; }

    /// <summary>
    /// The weight quantizer <c>UseQDit</c> sets: GPTQ with these options (the reference code's <c>--use_gptq</c>, which its
    /// <c>quant_main.sh</c> passes). Null: keep the builder's quantizer (RTN unless another was set). Default GPTQ's defaults.
    /// </summary>
    public GptqOptions? Gptq { get; init; } = new();

    /// <summary>
    /// The config of a layer at group size <paramref name="groupSize"/> (0 = per channel): the weight template with that
    /// granularity and, with <see cref="ActivationGroupsFollowWeights"/>, the (dynamic) activation template grouped alike.
    /// </summary>
    public LayerQuantConfig ConfigFor(int groupSize, QuantSpec weightTemplate, QuantSpec activationTemplate)
    {
        ArgumentNullException.ThrowIfNull(weightTemplate);
        ArgumentNullException.ThrowIfNull(activationTemplate);
        ArgumentOutOfRangeException.ThrowIfNegative(groupSize);
        var weight = !weightTemplate.IsEnabled ? weightTemplate : groupSize == 0
            ? weightTemplate with { Granularity = QuantGranularity.PerChannel, GroupSize = 0 }
            : weightTemplate with { Granularity = QuantGranularity.PerGroup, GroupSize = groupSize };
        var activation = !activationTemplate.IsEnabled || !ActivationGroupsFollowWeights ? activationTemplate : groupSize == 0
            ? activationTemplate with { Granularity = QuantGranularity.PerToken, GroupSize = 0, Dynamic = true }
            : activationTemplate with { Granularity = QuantGranularity.PerGroup, GroupSize = groupSize, Dynamic = true };
        return new LayerQuantConfig(weight, activation);
    }

    /// <summary>The reference group size for a weight template: the template's group when it is per group, else <see cref="ReferenceGroupSize"/>.</summary>
    public int ReferenceFor(QuantSpec? weightTemplate) =>
        weightTemplate is { Granularity: QuantGranularity.PerGroup, GroupSize: > 0 } w ? w.GroupSize : ReferenceGroupSize;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (GroupSizes is null || GroupSizes.Count == 0) p.Add("Q-DiT: no candidate group sizes.");
        else
        {
            p.AddRange(GroupSizes.Where(g => g < 0).Select(g => $"Q-DiT: group size {g} must be positive, or 0 for per-channel."));
            if (GroupSizes.Distinct().Count() != GroupSizes.Count) p.Add($"Q-DiT: the candidate group sizes {{{string.Join(", ", GroupSizes)}}} repeat a value.");
            if (!GroupSizes.Contains(ReferenceGroupSize)) p.Add($"Q-DiT: the reference group size {ReferenceGroupSize} is not among the candidates {{{string.Join(", ", GroupSizes)}}}.");
        }
        if (!Enum.IsDefined(Constraint)) p.Add($"Q-DiT: constraint {(int)Constraint} is not a QDitConstraint value.");
        if (Population < 1) p.Add($"Q-DiT: population {Population} must be at least 1.");
        if (Generations < 0) p.Add($"Q-DiT: generations {Generations} must not be negative.");
        if (SelectCount < 1) p.Add($"Q-DiT: select count {SelectCount} must be at least 1.");
        if (MutationCount < 0) p.Add($"Q-DiT: mutation count {MutationCount} must not be negative.");
        if (CrossoverCount < 0) p.Add($"Q-DiT: crossover count {CrossoverCount} must not be negative.");
        if (MutationCount + CrossoverCount > Population)
            p.Add($"Q-DiT: {MutationCount} mutation + {CrossoverCount} crossover children exceed the population {Population}.");
        if (!(MutationProbability >= 0 && MutationProbability <= 1)) p.Add($"Q-DiT: mutation probability {MutationProbability} must be in [0, 1].");
        if (AttemptsPerChild < 1) p.Add($"Q-DiT: attempts per child {AttemptsPerChild} must be at least 1.");
        if (Gptq is not null) p.AddRange(Gptq.FindProblems().Select(x => $"Q-DiT: {x}"));
        return p;
    }
}
