// QuantLinear (partial): the quantized weight versions, one per weight QuantSpec, and the
// dequantized float copy of each that the fake-quantized path multiplies with (made on first use,
// kept until released). A version whose codes are the rounded top bits of a wider held version's codes is stored
// nested: only its scales are kept, its codes are read from the wider version when needed (NestWeightVersions).
// The module and its forward are in QuantLinear.cs.
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
    /// points; a nested version counts its scales only, see <see cref="NestWeightVersions"/>), those of every smoothing
    /// step group (<see cref="SetStepWeightVersion"/>), plus the full-precision low-rank branch when one is set
    /// (<see cref="LowRankBytes"/>), which every quantized call also reads.
    /// </summary>
    public long QuantizedWeightBytes => _versions.Values.Concat(StepVersions).Sum(v => v.StoredBytes) + LowRankBytes;

    /// <summary>Bytes the version for <paramref name="spec"/> adds to <see cref="QuantizedWeightBytes"/> (a nested version: its scales only).</summary>
    /// <exception cref="LayerQuantizationException">The layer holds no version for <paramref name="spec"/>.</exception>
    public long WeightVersionBytes(QuantSpec spec) => Version(spec).StoredBytes;

    /// <summary>The spec of the wider version whose codes the version for <paramref name="spec"/> is read from, or null when it is stored whole.</summary>
    /// <exception cref="LayerQuantizationException">The layer holds no version for <paramref name="spec"/>.</exception>
    public QuantSpec? NestedParentOf(QuantSpec spec) => Version(spec).Parent?.Integer.Spec;

    /// <summary>
    /// Stores every weight version whose codes are the rounded top bits of a wider held version's codes
    /// (<see cref="NestedCodeSlice.IsNestedIn"/>: symmetric codes, same shape) as nested: only its
    /// scales are kept and its codes are read from the wider version when a call needs them. Every call computes exactly
    /// what it did before; <see cref="QuantizedWeightBytes"/> drops by the nested versions' codes. The widest version that
    /// nests a narrower one is its parent; parents stay stored whole. The pipeline calls this after quantizing each layer.
    /// Returns how many versions became nested.
    /// </summary>
    public int NestWeightVersions()
    {
        int nested = 0;
        var order = _versions.Values.Where(v => !v.IsNested && v.Integer.Spec.Symmetric).OrderByDescending(v => v.Integer.Spec.Bits).ToList();
        var stored = new List<WeightVersion>();
        foreach (var v in order)
        {
            var parent = stored.FirstOrDefault(p => p.Integer.Spec.Bits > v.Integer.Spec.Bits && NestedCodeSlice.IsNestedIn(v.Integer, p.Integer));
            if (parent is null)
            {
                stored.Add(v);
                continue;
            }
            var spec = v.Integer.Spec;
            _versions[spec] = WeightVersion.NestedIn(parent, v.Integer, weight.dtype, weight.device);
            v.Dispose();
            nested++;
        }
        return nested;
    }

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
        if (_versions.Remove(quantized.Spec, out var old))
        {
            StoreChildrenWhole(old);
            old.Dispose();
        }
        _versions[quantized.Spec] = new WeightVersion(quantized, weight.dtype, weight.device);
    }

    // Before a parent goes, every version nested in it gets its own codes back.
    private void StoreChildrenWhole(WeightVersion parent)
    {
        foreach (var (spec, child) in _versions.Where(p => ReferenceEquals(p.Value.Parent, parent)).ToList())
        {
            _versions[spec] = new WeightVersion(child.MaterializeOwned(), weight.dtype, weight.device);
            child.Dispose();
        }
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

    /// <summary>
    /// The integer form of the version for <paramref name="spec"/> (owned by the layer). For a nested version it is made
    /// from the parent's codes on first use and kept until <see cref="ReleaseDequantizedWeights"/>; use it at once.
    /// </summary>
    public QuantizedTensor GetWeightVersion(QuantSpec spec) => Version(spec).Integer;

    /// <summary>Removes (and frees) the version for <paramref name="spec"/>, and the smoothing step groups' versions for it; false when the layer held none.</summary>
    public bool RemoveWeightVersion(QuantSpec spec)
    {
        RemoveStepVersions(spec);
        if (!_versions.Remove(spec, out var old)) return false;
        StoreChildrenWhole(old);
        old.Dispose();
        return true;
    }

    /// <summary>Removes every quantized weight version (the smoothing step groups' too).</summary>
    public void ClearWeightVersions()
    {
        ClearStepVersions();
        foreach (var v in _versions.Values.OrderByDescending(v => v.IsNested)) v.Dispose();   // nested ones first
        _versions.Clear();
    }

    private WeightVersion Version(QuantSpec spec)
    {
        if (_versions.TryGetValue(spec, out var v)) return v;
        string held = _versions.Count == 0 ? "none" : string.Join("; ", _versions.Keys);
        throw new LayerQuantizationException(LayerName, $"no quantized weight version for {spec} (held: {held}). Quantize the layer for every config its policy uses.");
    }

    // Moves every version to the layer's dtype and device (stored ones first, then the nested ones onto their moved parents).
    private void MoveWeightVersions()
    {
        var moved = new Dictionary<WeightVersion, WeightVersion>(ReferenceEqualityComparer.Instance);
        foreach (var (spec, v) in _versions.Where(p => !p.Value.IsNested).ToList())
        {
            var m = v.To(weight.dtype, weight.device);
            moved[v] = m;
            _versions[spec] = m;
        }
        foreach (var (spec, v) in _versions.Where(p => p.Value.IsNested).ToList())
            _versions[spec] = v.ToNested(moved[v.Parent!], weight.dtype, weight.device);
    }

    // A weight version: its integer form (stored, or for a nested version made from the parent's codes and its own
    // scales on first use), and the dequantized float copy the fake-quantized path uses, made on first use (in the
    // layer's dtype and on its device) and kept until released.
    private sealed class WeightVersion : IDisposable
    {
        private readonly object _gate = new();
        private readonly ScalarType _dtype;
        private readonly Device _device;
        private readonly QuantizedTensor? _stored;
        private readonly QuantParams? _nestedParams;     // a nested version's own scales
        private readonly QuantSpec? _nestedSpec;
        private QuantizedTensor? _materialized;          // a nested version's codes, made on use, freed on release
        private Tensor? _dequantized;

        public WeightVersion(QuantizedTensor integer, ScalarType dtype, Device device)
        {
            _stored = integer;
            _dtype = dtype;
            _device = device;
        }

        private WeightVersion(WeightVersion parent, QuantSpec spec, QuantParams parameters, ScalarType dtype, Device device)
        {
            Parent = parent;
            _nestedSpec = spec;
            _nestedParams = parameters;
            _dtype = dtype;
            _device = device;
        }

        // A version stored as nested in parent: keeps a copy of narrow's scales (narrow stays the caller's).
        public static WeightVersion NestedIn(WeightVersion parent, QuantizedTensor narrow, ScalarType dtype, Device device) =>
            new(parent, narrow.Spec, new QuantParams(narrow.Parameters.Scale.clone(), narrow.Parameters.Zero?.clone()), dtype, device);

        public WeightVersion? Parent { get; }

        public bool IsNested => Parent is not null;

        public long StoredBytes => _stored?.StorageBytes
            ?? _nestedParams!.Scale.numel() * _nestedParams.Scale.ElementSize + (_nestedParams.Zero is null ? 0 : _nestedParams.Zero.numel() * _nestedParams.Zero.ElementSize);

        public QuantizedTensor Integer
        {
            get
            {
                if (_stored is not null) return _stored;
                lock (_gate) return _materialized ??= MaterializeOwned();
            }
        }

        // A fresh integer form the caller owns: the nested codes rebuilt from the parent, or a copy of the stored ones.
        public QuantizedTensor MaterializeOwned()
        {
            if (_stored is not null) return _stored.To(_stored.Codes.device);
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var parent = Parent!.Integer;
            return NestedCodeSlice.FromCodes(NestedCodeSlice.Codes(parent, _nestedSpec!), _nestedSpec!, _nestedParams!.Scale);
        }

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
                        {
                            // A nested version's codes are made for this and dropped: the float copy is what the calls use.
                            using var transient = _stored is null && _materialized is null ? MaterializeOwned() : null;
                            var integer = _stored ?? _materialized ?? transient!;
                            _dequantized = integer.Dequantize().to(_dtype, _device, disposeAfter: true).DetachFromDisposeScope();
                        }
                    return _dequantized;
                }
            }
        }

        public WeightVersion To(ScalarType newType, Device newDevice)
        {
            if (_stored is null) throw new InvalidOperationException("a nested version moves with its parent (ToNested).");
            if (_dtype == newType && _device.type == newDevice.type && _device.index == newDevice.index) return this;
            var moved = _stored.To(newDevice);
            Dispose();
            return new WeightVersion(moved, newType, newDevice);
        }

        public WeightVersion ToNested(WeightVersion movedParent, ScalarType newType, Device newDevice)
        {
            if (ReferenceEquals(movedParent, Parent) && _dtype == newType && _device.type == newDevice.type && _device.index == newDevice.index) return this;
            var moved = new WeightVersion(movedParent, _nestedSpec!, _nestedParams!.To(newDevice), newType, newDevice);
            Dispose();
            return moved;
        }

        public void ReleaseDequantized()
        {
            lock (_gate)
            {
                _dequantized?.Dispose();
                _dequantized = null;
                _materialized?.Dispose();
                _materialized = null;
            }
        }

        public void Dispose()
        {
            _stored?.Dispose();
            _nestedParams?.Dispose();
            ReleaseDequantized();
        }
    }
}
