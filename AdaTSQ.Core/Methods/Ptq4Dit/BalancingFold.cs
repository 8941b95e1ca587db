using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>One balanced layer of a <see cref="BalancingFold"/>: where its <c>B⁻¹</c> went and the range of its factors.</summary>
/// <param name="Layer">The balanced linear, e.g. <c>blocks.3.attn.qkv</c> (its weight columns were multiplied by B).</param>
/// <param name="FoldedInto">Where <c>B⁻¹</c> was folded, e.g. <c>blocks.3.adaLN_modulation.1 (shift_msa, scale_msa)</c>.</param>
/// <param name="MinFactor">The smallest b_j.</param>
/// <param name="MaxFactor">The largest b_j.</param>
public sealed record FoldedLayer(string Layer, string FoldedInto, double MinFactor, double MaxFactor);

/// <summary>
/// What <see cref="DiTReparameterization.Fold"/> changed in a model: the balanced layers, and a copy of every parameter it
/// changed, so that <see cref="Undo"/> puts the original values back bit for bit. Dispose frees the copies (the model keeps
/// the folded parameters).
/// </summary>
public sealed class BalancingFold : IDisposable
{
    private readonly Dictionary<string, (Parameter Parameter, Tensor Original)> _originals;

    internal BalancingFold(Dictionary<string, (Parameter Parameter, Tensor Original)> originals, IReadOnlyList<FoldedLayer> layers)
    {
        _originals = originals;
        Layers = layers;
    }

    /// <summary>The balanced layers, in the order they were folded.</summary>
    public IReadOnlyList<FoldedLayer> Layers { get; }

    /// <summary>The names of the parameters the fold changed (weights and biases of the balanced layers and of the fold targets).</summary>
    public IReadOnlyCollection<string> ChangedParameters => _originals.Keys;

    /// <summary>Whether <see cref="Undo"/> can still run (false after it ran or after <see cref="Dispose"/>).</summary>
    public bool CanUndo => _originals.Count > 0;

    /// <summary>
    /// Puts every changed parameter back to its value before the fold (exactly) and frees the copies. Only while no layer has
    /// been quantized from the folded weights — the caller's responsibility (restore the quantized layers first).
    /// </summary>
    /// <exception cref="InvalidOperationException">Already undone or disposed.</exception>
    public void Undo()
    {
        if (_originals.Count == 0) throw new InvalidOperationException("the PTQ4DiT fold was already undone or disposed.");
        using (torch.no_grad())
            foreach (var (parameter, original) in _originals.Values) parameter.copy_(original);
        Dispose();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (_, original) in _originals.Values) original.Dispose();
        _originals.Clear();
    }
}
