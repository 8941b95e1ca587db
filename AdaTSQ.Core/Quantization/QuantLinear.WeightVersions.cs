// QuantLinear (partial): the quantized weight versions, one per weight QuantSpec, and the
// dequantized float copy of each that the fake-quantized path multiplies with (made on first use,
// kept until released). The module and its forward are in QuantLinear.cs.
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private readonly Dictionary<QuantSpec, WeightVersion> _versions = new();

    /// <summary>The weight specs this layer holds a quantized version for.</summary>
    public IReadOnlyCollection<QuantSpec> WeightVersions => _versions.Keys;

    /// <summary>
    /// Bytes of the quantized layer's weights: every quantized weight version held (integer codes, scales, zero
    /// points), those of every smoothing step group (<see cref="SetStepWeightVersion"/>), plus the
    /// full-precision low-rank branch when one is set (<see cref="LowRankBytes"/>), which every quantized call also reads.
    /// </summary>
    public long QuantizedWeightBytes => _versions.Values.Concat(StepVersions).Sum(v => v.Integer.StorageBytes) + LowRankBytes;

    /// <summary>True when a version for <paramref name="spec"/> is held.</summary>
    public bool HasWeightVersion(QuantSpec spec) => _versions.ContainsKey(spec);

    /// <summary>
    /// Adds (or replaces) the weight version of <paramref name="quantized"/>'s spec. Takes ownership.
    /// The shape must match the float weight.
    /// </summary>
    public void SetWeightVersion(QuantizedTensor quantized)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        if (!quantized.Shape.SequenceEqual(weight.shape))
            throw new LayerQuantizationException(LayerName, $"quantized weight has shape [{string.Join(", ", quantized.Shape)}], expected [{string.Join(", ", weight.shape)}].");
        if (_versions.Remove(quantized.Spec, out var old)) old.Dispose();
        _versions[quantized.Spec] = new WeightVersion(quantized, weight.dtype, weight.device);
    }

    /// <summary>
    /// Bytes of the float copies of the weight versions held now. The fake-quantized path multiplies
    /// with a dequantized float copy of a version, made on its first use and kept; the integer kernels
    /// never need it. See <see cref="ReleaseDequantizedWeights"/>.
    /// </summary>
    public long DequantizedWeightBytes => _versions.Values.Concat(StepVersions).Sum(v => v.DequantizedBytes);

    /// <summary>
    /// Frees the dequantized float copies of the weight versions (a fake-quantized call makes the one it
    /// needs again). <see cref="IntegerLinearKernel.Attach"/> calls it: on the integer kernels a version
    /// costs its codes and its packed form only. Returns the bytes freed.
    /// </summary>
    public long ReleaseDequantizedWeights()
    {
        long bytes = DequantizedWeightBytes;
        foreach (var v in _versions.Values.Concat(StepVersions)) v.ReleaseDequantized();
        return bytes;
    }

    /// <summary>The integer form of the version for <paramref name="spec"/> (owned by the layer).</summary>
    public QuantizedTensor GetWeightVersion(QuantSpec spec) => Version(spec).Integer;

    /// <summary>Removes (and frees) the version for <paramref name="spec"/>, and the smoothing step groups' versions for it; false when the layer held none.</summary>
    public bool RemoveWeightVersion(QuantSpec spec)
    {
        RemoveStepVersions(spec);
        if (!_versions.Remove(spec, out var old)) return false;
        old.Dispose();
        return true;
    }

    /// <summary>Removes every quantized weight version (the smoothing step groups' too).</summary>
    public void ClearWeightVersions()
    {
        ClearStepVersions();
        foreach (var v in _versions.Values) v.Dispose();
        _versions.Clear();
    }

    private WeightVersion Version(QuantSpec spec)
    {
        if (_versions.TryGetValue(spec, out var v)) return v;
        string held = _versions.Count == 0 ? "none" : string.Join("; ", _versions.Keys);
        throw new LayerQuantizationException(LayerName, $"no quantized weight version for {spec} (held: {held}). Quantize the layer for every config its policy uses.");
    }

    // A weight version: its integer form, and the dequantized float copy the fake-quantized path uses,
    // made on first use (in the layer's dtype and on its device) and kept until released.
    private sealed class WeightVersion(QuantizedTensor integer, ScalarType dtype, Device device) : IDisposable
    {
        private readonly object _gate = new();
        private Tensor? _dequantized;

        public QuantizedTensor Integer { get; } = integer;

        public long DequantizedBytes
        {
            get { lock (_gate) return _dequantized is null ? 0 : _dequantized.numel() * _dequantized.ElementSize; }
        }

        public Tensor Dequantized
        {
            get
            {
                lock (_gate)
                {
                    if (_dequantized is null)
                        using (torch.no_grad())
                            _dequantized = Integer.Dequantize().to(dtype, device, disposeAfter: true).DetachFromDisposeScope();
                    return _dequantized;
                }
            }
        }

        public WeightVersion To(ScalarType newType, Device newDevice)
        {
            if (dtype == newType && device.type == newDevice.type && device.index == newDevice.index) return this;
            var moved = Integer.To(newDevice);
            Dispose();
            return new WeightVersion(moved, newType, newDevice);
        }

        public void ReleaseDequantized()
        {
            lock (_gate)
            {
                _dequantized?.Dispose();
                _dequantized = null;
            }
        }

        public void Dispose()
        {
            Integer.Dispose();
            ReleaseDequantized();
        }
    }
}
