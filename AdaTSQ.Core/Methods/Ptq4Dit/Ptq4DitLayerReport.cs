namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// What PTQ4DiT's salience calibration found for one balanced layer: per calibration step, Spearman's ρ_t between the
/// step's activation salience and the weight salience, and the step's weight η_t in the calibrated salience. Empty lists
/// when SSC is off or the calibration data had no steps (then s(X) is the maximum over all data).
/// </summary>
/// <param name="Layer">The balanced layer.</param>
/// <param name="Steps">Sampling step indices, in the order of <paramref name="Rho"/> and <paramref name="Eta"/>.</param>
/// <param name="Rho">ρ_t per step.</param>
/// <param name="Eta">η_t = softmax(−ρ)_t per step.</param>
/// <param name="MinFactor">The smallest balancing factor b_j of the layer.</param>
/// <param name="MaxFactor">The largest balancing factor b_j of the layer.</param>
public sealed record Ptq4DitLayerReport(string Layer, IReadOnlyList<int> Steps, IReadOnlyList<double> Rho, IReadOnlyList<double> Eta, double MinFactor, double MaxFactor);
