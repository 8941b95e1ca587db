using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>A partial policy of the beam: the candidate chosen at each stage so far and the samples it leads to.</summary>
/// <param name="Choices">Candidate index per finished stage.</param>
/// <param name="Additive">Sum over finished steps of the budget's additive cost (bits or BOPs; 0 for memory).</param>
/// <param name="Used">For memory budgets: the (layer, bits) weight versions used so far (<see cref="SearchCost.Key"/>).</param>
/// <param name="X">The samples after the last finished stage (owned by the path).</param>
/// <param name="Errors">MSE against full precision at the end of each finished stage.</param>
internal sealed record SearchPath(IReadOnlyList<int> Choices, double Additive, IReadOnlySet<long> Used, Tensor X, IReadOnlyList<double> Errors);
