namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// How <see cref="LayerSensitivity.FromLayers"/> turns the layers' quantization errors and the temporal Fisher into
/// the per-step layer scores <c>score(t, l, b) = w_{t,l} · E_l(b)</c> that rank layers when the candidates of a
/// stage are made (<see cref="CandidateGenerator"/>). Without a Fisher estimate both modes use <c>w = 1</c>.
/// </summary>
public enum SensitivityMode
{
    /// <summary>
    /// The original scores (the default; results made before this option existed are reproduced by it).
    /// <c>w_{t,l} = α_{t,l}</c>, the layer's own Fisher weights over steps from
    /// <see cref="BitWidthSearchOptions.SensitivityWeighting"/> (mean 1 per layer, so the magnitude of one layer's
    /// Fisher against another's is discarded); <c>E_l(b)</c> = <see cref="Pipeline.LayerReport.OutputSquaredError"/>,
    /// the output error on the calibration Hessian — which, with Fisher-weighted calibration, is already the
    /// α-weighted Hessian <c>Σ_t α_t X_t X_tᵀ</c>, so the Fisher is counted twice — or <c>‖W − Q_b‖²</c> without
    /// calibration statistics.
    /// </summary>
    PerLayerAlpha,

    /// <summary>
    /// Cross-layer Fisher, counted once: a second-order estimate of the loss increase,
    /// <c>score(t, l, b) = φ_{t,l} · Ê_l(b)</c>.
    /// <c>φ_{t,l} = (F_{t,l} / n_l) / mean_{t′,l′}(F_{t′,l′} / n_{l′})</c>: the raw temporal Fisher of the layer's
    /// weight at the step (<see cref="Fisher.TemporalFisher"/>, the trace of its empirical Fisher) per weight, so the
    /// mean diagonal Fisher entry, normalized once over every (step, layer) — not per layer, so a layer whose Fisher
    /// is 10× another's scores 10× at equal error. <see cref="BitWidthSearchOptions.SensitivityWeighting"/> is not
    /// used. <c>Ê_l(b)</c> is a weight-space error that carries no Fisher magnitude:
    /// <c>d_in · E_l(b) / tr(H̄_l)</c> when the layer's report carries both
    /// <see cref="Pipeline.LayerReport.OutputSquaredError"/> (<c>E = tr(ΔW H̄ ΔWᵀ)</c>) and
    /// <see cref="Pipeline.LayerReport.InputSecondMomentTrace"/> (<c>tr(H̄)</c>, from the same Hessian), else
    /// <c>‖W − Q_b‖²</c>. Dividing by the trace cancels any scale of the Hessian's weighting, so when the Hessian is
    /// the α-weighted one of a Fisher calibration the Fisher still enters the score once, through φ; the α-weighting
    /// only changes which input directions the error is measured along. For isotropic inputs (<c>H̄ = σ² I</c>) both
    /// forms equal <c>‖ΔW‖²</c>, so <c>½ φ · Ê</c> is the diagonal-Fisher estimate <c>½ Σ_i F_ii ΔW_i²</c> with the
    /// layer's mean diagonal entry. The global normalization rescales every score by one constant and changes no
    /// candidate.
    /// </summary>
    CrossLayerFisher,
}
