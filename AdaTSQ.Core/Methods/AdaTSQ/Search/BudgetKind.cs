namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>What a <see cref="BitBudget"/> limits.</summary>
public enum BudgetKind
{
    /// <summary>Average weight bits, weighted by parameters over layers and averaged over sampling steps.</summary>
    AverageWeightBits,

    /// <summary>
    /// Average bit operations of one model evaluation for one sample: Σ_layers MACs × weight bits ×
    /// activation bits (16 for an unquantized operand), averaged over sampling steps.
    /// </summary>
    AverageBitOperations,

    /// <summary>
    /// Average activation bits, weighted by parameters over layers (= by multiply-accumulates per token for linear layers)
    /// and averaged over sampling steps; only with <see cref="SearchAxis.ActivationBits"/>.
    /// </summary>
    AverageActivationBits,

    /// <summary>Bytes of every quantized weight version the policy makes the layers keep (a layer using W4 and W8 stores both).</summary>
    WeightMemory,
}
