using AdaTSQ.Abstractions;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>A bit-width search budget that no policy of the search space can meet.</summary>
public sealed class BudgetException(string message) : AdaTSQException(message);
