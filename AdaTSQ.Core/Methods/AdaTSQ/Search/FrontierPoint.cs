using AdaTSQ.Policies;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>One complete policy the search evaluated end to end: its cost and its error against full precision.</summary>
/// <param name="Label">"dynamic", or "static 4.00 (…)" for a time-constant reference.</param>
/// <param name="Policy">The policy (a config per step and layer).</param>
/// <param name="AverageWeightBits">Parameter-weighted over layers, averaged over steps.</param>
/// <param name="AverageBitOperations">Bit operations of one model evaluation for one sample, averaged over steps.</param>
/// <param name="WeightMemoryBytes">Bytes of the weight versions the policy keeps.</param>
/// <param name="FinalMse">MSE of the final samples against the full-precision ones (same noise).</param>
/// <param name="FinalPsnr">PSNR (dB, data range 2) of the final samples against full precision.</param>
/// <param name="StageErrors">MSE against the full-precision trajectory at the end of every stage.</param>
/// <param name="StepAverageBits">Parameter-weighted average weight bits of every step.</param>
public sealed record FrontierPoint(string Label, DynamicTimestepPolicy Policy, double AverageWeightBits, double AverageBitOperations,
    long WeightMemoryBytes, double FinalMse, double FinalPsnr, IReadOnlyList<double> StageErrors, IReadOnlyList<double> StepAverageBits);
