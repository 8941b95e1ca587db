namespace AdaTSQ.Evaluation.Comparison;

/// <summary>Whether a comparison cell produced figures.</summary>
public enum CellStatus
{
    /// <summary>Quantized, sampled and summarized.</summary>
    Ok,

    /// <summary>Building, quantizing or sampling threw; <see cref="ComparisonCell.Failure"/> says why.</summary>
    Failed,
}
