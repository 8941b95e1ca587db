namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>Which bit-width a <see cref="BitWidthSearch"/> varies per layer and step.</summary>
public enum SearchAxis
{
    /// <summary>
    /// The weight bits (<see cref="BitWidthSearchOptions.WeightBits"/>); activations follow
    /// <see cref="BitWidthSearchOptions.ActivationSpec"/>, or the weight bits with <see cref="BitWidthSearchOptions.PairActivationBits"/>.
    /// A dynamic policy keeps every weight version some step uses.
    /// </summary>
    WeightBits,

    /// <summary>
    /// The activation bits (<see cref="BitWidthSearchOptions.ActivationBits"/>) with one static weight version per layer
    /// (<see cref="BitWidthSearchOptions.WeightSpec"/> at its own bits): a dynamic policy costs no extra weight memory,
    /// and the integer kernels switch the activation bits per call. Budgets: <see cref="BudgetKind.AverageActivationBits"/>
    /// or <see cref="BudgetKind.AverageBitOperations"/>.
    /// </summary>
    ActivationBits,
}
