using System.Globalization;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>The cost limit of a bit-width search: a kind (<see cref="BudgetKind"/>) and a value.</summary>
/// <param name="Kind">What is limited.</param>
/// <param name="Value">The limit: bits, bit operations, or bytes.</param>
public sealed record BitBudget(BudgetKind Kind, double Value)
{
    /// <summary>At most <paramref name="bits"/> weight bits on average (parameter-weighted over layers, averaged over steps).</summary>
    public static BitBudget AverageWeightBits(double bits) => new(BudgetKind.AverageWeightBits, bits);

    /// <summary>At most <paramref name="bits"/> activation bits on average (parameter-weighted over layers, averaged over steps; <see cref="SearchAxis.ActivationBits"/>).</summary>
    public static BitBudget AverageActivationBits(double bits) => new(BudgetKind.AverageActivationBits, bits);

    /// <summary>At most <paramref name="bops"/> bit operations per model evaluation per sample, on average over steps.</summary>
    public static BitBudget AverageBitOperations(double bops) => new(BudgetKind.AverageBitOperations, bops);

    /// <summary>At most <paramref name="bytes"/> bytes of quantized weight versions.</summary>
    public static BitBudget WeightMemory(long bytes) => new(BudgetKind.WeightMemory, bytes);

    /// <summary>Every problem with the budget; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (!Enum.IsDefined(Kind)) p.Add($"budget kind {(int)Kind} is not a BudgetKind value.");
        if (!(double.IsFinite(Value) && Value > 0)) p.Add($"budget {Value} must be finite and positive.");
        return p;
    }

    /// <summary>E.g. <c>avg weight bits ≤ 4</c>.</summary>
    public override string ToString() => Kind switch
    {
        BudgetKind.AverageWeightBits => string.Create(CultureInfo.InvariantCulture, $"avg weight bits ≤ {Value:G4}"),
        BudgetKind.AverageActivationBits => string.Create(CultureInfo.InvariantCulture, $"avg activation bits ≤ {Value:G4}"),
        BudgetKind.AverageBitOperations => string.Create(CultureInfo.InvariantCulture, $"avg BOPs/sample ≤ {Value:G4}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"weight memory ≤ {Value:N0} bytes"),
    };
}
