using AdaTSQ.Policies;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>One complete policy the search evaluated end to end: its cost and its error against full precision.</summary>
/// <param name="Label">"dynamic", or "static 4.00 (…)" for a time-constant reference.</param>
/// <param name="Policy">The policy (a config per step and layer).</param>
/// <param name="AverageWeightBits">Weight bits, parameter-weighted over layers, averaged over steps.</param>
/// <param name="AverageBitOperations">Bit operations of one model evaluation for one sample, averaged over steps.</param>
/// <param name="WeightMemoryBytes">Bytes of the weight versions the policy keeps.</param>
/// <param name="FinalMse">MSE of the final samples against the full-precision ones (same noise).</param>
/// <param name="FinalPsnr">PSNR (dB, data range 2) of the final samples against full precision.</param>
/// <param name="StageErrors">MSE against the full-precision trajectory at the end of every stage.</param>
/// <param name="StepAverageBits">Parameter-weighted average of the searched bits (weight bits, or activation bits on the activation axis) of every step.</param>
/// <param name="HeldOutMse">
/// MSE of the final samples of the held-out trajectories against their full-precision ones, when the search was given
/// held-out trajectories (null otherwise). The search selects its <see cref="BitWidthSearchResult.Best"/> by this error then.
/// </param>
/// <param name="HeldOutPsnr">PSNR (dB, data range 2) of the held-out final samples against full precision; null without held-out trajectories.</param>
/// <param name="AverageActivationBits">
/// On the activation axis (<see cref="SearchAxis.ActivationBits"/>): activation bits, parameter-weighted over layers and
/// averaged over steps (the budget's measure); null on the weight axis.
/// </param>
public sealed record FrontierPoint(string Label, DynamicTimestepPolicy Policy, double AverageWeightBits, double AverageBitOperations,
    long WeightMemoryBytes, double FinalMse, double FinalPsnr, IReadOnlyList<double> StageErrors, IReadOnlyList<double> StepAverageBits,
    double? HeldOutMse = null, double? HeldOutPsnr = null, double? AverageActivationBits = null)
{
    /// <summary>The error the search selects by: <see cref="HeldOutMse"/> when measured, else <see cref="FinalMse"/>.</summary>
    public double SelectionMse => HeldOutMse ?? FinalMse;
}
