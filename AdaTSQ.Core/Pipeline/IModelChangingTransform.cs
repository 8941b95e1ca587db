namespace AdaTSQ.Pipeline;

/// <summary>
/// A step of a plan — a layer transform (<see cref="ILayerTransform"/>) or a post-quantization step
/// (<see cref="IPostQuantizationStep"/>) — that also changes the model outside its quantized layers (PTQ4DiT folds its
/// balancing into the adaLN modulation and the value rows; D²Quant's DAC adds to the adaLN shift) and can put those
/// parameters back. <see cref="QuantizationResult.Restore"/> and a failed <see cref="QuantizationPipeline.Apply"/> call
/// <see cref="RevertModelChanges"/> on every such step of the plan, in reverse order (post-quantization steps first),
/// after the original linear layers are back, so that a restored model computes exactly what it did before the run.
/// </summary>
public interface IModelChangingTransform
{
    /// <summary>Whether the model currently holds this transform's changes.</summary>
    bool HasChangedModel { get; }

    /// <summary>Puts back the parameters the transform changed; does nothing when <see cref="HasChangedModel"/> is false.</summary>
    void RevertModelChanges();
}
