namespace AdaTSQ.Methods.QDit;

/// <summary>
/// The efficiency constraint of Q-DiT's group-size search: which cost of a candidate assignment may not be worse than that
/// of the uniform reference assignment (every layer at the reference group size). See <see cref="GroupSizeCost"/>.
/// </summary>
public enum QDitConstraint
{
    /// <summary>
    /// The per-group scale operations of one model evaluation, Σ_l MACs_l / g_l (g_l = K_l for per-channel), may not
    /// exceed the reference's. It is the part of the paper's bit-operation (BitOPs) bound that group sizes change: the
    /// integer multiply-accumulates are the same for every assignment, the rescaling of partial sums per group is not.
    /// Weighted by each layer's MACs, so shrinking a large layer's groups costs more than a small one's.
    /// </summary>
    ScaleOperations,

    /// <summary>
    /// The unweighted mean group size over the searched layers, (1/L) Σ_l g_l (g_l = K_l for per-channel), may not fall
    /// below the reference's: the reference code's <c>efficiency_predictor</c> with <c>--constraint 128</c>.
    /// </summary>
    MeanGroupSize,
}
