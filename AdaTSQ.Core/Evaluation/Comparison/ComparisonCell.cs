using System.Text.Json.Serialization;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// One (method, bit setting) cell of a comparison, as cached on disk: its summary, the per-image values behind it
/// (so paired comparisons between any two cells need no re-sampling), its costs, or why it failed.
/// </summary>
public sealed record ComparisonCell
{
    /// <summary>Method name (<see cref="ComparisonMethod.Name"/>); <see cref="ModelComparison.ReferenceMethod"/> for the reference row.</summary>
    public required string Method { get; init; }

    /// <summary>Bit setting name (<see cref="BitSetting.Name"/>); <see cref="ModelComparison.ReferenceBits"/> for the reference row.</summary>
    public required string Bits { get; init; }

    /// <summary>Hex SHA-256 of <see cref="FingerprintInputs"/>: the cache key.</summary>
    public required string Fingerprint { get; init; }

    /// <summary>What decided this cell's result, as key/value text (the model identity, the method's description, the bits, the evaluation options …).</summary>
    public required IReadOnlyDictionary<string, string> FingerprintInputs { get; init; }

    /// <summary>Whether the cell produced figures.</summary>
    public CellStatus Status { get; init; }

    /// <summary>For a failed cell: the exception type and message.</summary>
    public string? Failure { get; init; }

    /// <summary>The figures with their intervals (null when failed).</summary>
    public SettingSummary? Summary { get; init; }

    /// <summary>Per-image PSNR (dB) against the reference, in sample order (+∞ for identical images).</summary>
    public IReadOnlyList<double> Psnr { get; init; } = [];

    /// <summary>Per-image SSIM against the reference, in sample order (empty when SSIM was off).</summary>
    public IReadOnlyList<double> Ssim { get; init; } = [];

    /// <summary>Per-image class correctness, in sample order (empty without a classifier).</summary>
    public IReadOnlyList<bool> Correct { get; init; } = [];

    /// <summary>Costs (null when failed before sampling).</summary>
    public CellCosts? Costs { get; init; }

    /// <summary>Whether the cell was sampled on the integer kernels.</summary>
    public bool IntegerKernels { get; init; }

    /// <summary>Why the cell was not sampled on the integer kernels (null when it was, or for the reference).</summary>
    public string? IntegerKernelsWhyNot { get; init; }

    /// <summary>When the cell was computed (UTC).</summary>
    public DateTimeOffset ComputedAt { get; init; }

    /// <summary>"method/bits".</summary>
    [JsonIgnore]
    public string Key => $"{Method}/{Bits}";

    /// <summary>True for a cell with figures.</summary>
    [JsonIgnore]
    public bool IsOk => Status == CellStatus.Ok && Summary is not null;
}
