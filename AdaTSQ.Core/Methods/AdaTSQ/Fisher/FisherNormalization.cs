namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// How <see cref="FisherWeighting"/> turns the Fisher values <c>F_t</c> of the <c>T</c> sampling steps into the
/// scores <c>a_t ≥ 0</c> that become the weights α (then <c>a_t^(1/τ)</c> and
/// <c>α_t = floor + (1 − floor)·a_t / mean(a)</c>, the same for every mode).
/// </summary>
/// <remarks>
/// The ε-loss Fisher of a diffusion model can span several orders of magnitude over the steps (four on the shipped
/// Fashion-MNIST DiT): proportional weights then put almost all of the Hessian's weight on the last few steps and the
/// rest at the floor. <see cref="Log"/> and <see cref="Rank"/> keep the order of the steps but compress the range, so the
/// weighted Hessian <c>Σ_t α_t X_t X_tᵀ</c> still draws on every step.
/// </remarks>
public enum FisherNormalization
{
    /// <summary><c>a_t = F_t</c> (scaled by max F, which mean(a) cancels): α proportional to F above the floor. The default.</summary>
    Power,

    /// <summary>
    /// <c>a_t = log(1 + F_t / median(F))</c>, the median over the steps with <c>F_t &gt; 0</c>: about proportional to F below the
    /// median, logarithmic above it, so a 10⁴× range becomes about a 9× range of the large scores.
    /// </summary>
    Log,

    /// <summary>
    /// <c>a_t = rank(F_t) / T</c>, ranks 1 … T from the smallest F (tied values share their mean rank): only the order of the
    /// steps is kept, their weights are evenly spaced whatever the range of F (α_max / α_min ≤ T before the floor).
    /// </summary>
    Rank,
}
