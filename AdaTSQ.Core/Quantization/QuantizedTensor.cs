using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// A tensor in real integer form: integer codes (int8 for signed grids, uint8 for asymmetric ones;
/// two codes per byte, see <see cref="Int4Packing"/>, when <see cref="QuantSpec.Bits"/> ≤ 4), with
/// float32 scales and zero points shaped <c>[rows, groups, 1]</c>. This is what is exported and
/// what integer kernels consume; <see cref="Dequantize"/> gives back the float tensor it stands for.
/// Owns its tensors.
/// </summary>
public sealed class QuantizedTensor : IDisposable
{
    private QuantizedTensor(Tensor codes, QuantParams parameters, QuantSpec spec, long[] shape, ScalarType dtype, bool packed)
    {
        Codes = codes.DetachFromDisposeScope();
        Parameters = parameters;
        Spec = spec;
        Shape = shape;
        OriginalDType = dtype;
        IsPacked = packed;
    }

    /// <summary>Integer codes: shape <c>[rows, cols]</c> (int8/uint8), or <c>[rows, ceil(cols/2)]</c> uint8 when packed.</summary>
    public Tensor Codes { get; }

    /// <summary>Scales and zero points.</summary>
    public QuantParams Parameters { get; }

    /// <summary>The spec the codes were made with.</summary>
    public QuantSpec Spec { get; }

    /// <summary>Shape of the original tensor.</summary>
    public long[] Shape { get; }

    /// <summary>Dtype of the original tensor, restored by <see cref="Dequantize"/>.</summary>
    public ScalarType OriginalDType { get; }

    /// <summary>True when two 4-bit codes share a byte.</summary>
    public bool IsPacked { get; }

    /// <summary>Bytes of codes, scales and zero points: what this tensor costs in memory.</summary>
    public long StorageBytes => Codes.numel() * Codes.ElementSize
        + Parameters.Scale.numel() * Parameters.Scale.ElementSize
        + (Parameters.Zero is null ? 0 : Parameters.Zero.numel() * Parameters.Zero.ElementSize);

    /// <summary>Quantizes <paramref name="x"/> round-to-nearest with scales computed from its own ranges.</summary>
    public static QuantizedTensor Quantize(Tensor x, QuantSpec spec)
    {
        if (!spec.IsEnabled) throw new QuantSpecException(["cannot store a full-precision (16-bit) spec as integers."]);
        var p = FakeQuantizer.ComputeParams(x, spec);
        try { return FromParams(x, spec, p); }
        catch { p.Dispose(); throw; }
    }

    /// <summary>
    /// Quantizes <paramref name="x"/> with given scales; takes ownership of <paramref name="parameters"/>.
    /// Methods that choose their own scales (GPTQ, clipping searches) build their result through this.
    /// </summary>
    public static QuantizedTensor FromParams(Tensor x, QuantSpec spec, QuantParams parameters)
    {
        using var scope = torch.NewDisposeScope();
        var q = FakeQuantizer.Quantize(x, spec, parameters);              // [rows, groups, g], float
        long cols = x.Dimensions == 0 ? 1 : x.shape[^1];
        var flat = q.reshape(-1, cols);
        Tensor codes;
        bool packed = spec.Bits <= 4;
        if (packed)
            codes = Int4Packing.Pack(flat, spec.Symmetric);
        else
            codes = flat.to(spec.Symmetric ? ScalarType.Int8 : ScalarType.Byte);
        return new QuantizedTensor(codes.MoveToOuterDisposeScope(), parameters, spec, x.shape, x.dtype, packed);
    }

    /// <summary>The integer codes unpacked, as int16 of shape <c>[rows, cols]</c>.</summary>
    public Tensor UnpackedCodes()
    {
        long cols = Shape.Length == 0 ? 1 : Shape[^1];
        return IsPacked ? Int4Packing.Unpack(Codes, cols, Spec.Symmetric).to(ScalarType.Int16) : Codes.to(ScalarType.Int16);
    }

    /// <summary>The float tensor these codes stand for, in the original shape and dtype, on the codes' device.</summary>
    public Tensor Dequantize()
    {
        using var scope = torch.NewDisposeScope();
        var codes = UnpackedCodes();
        var grouped = FakeQuantizer.GroupView(codes.reshape(Shape), Spec);
        return FakeQuantizer.Dequantize(grouped, Parameters, Shape, OriginalDType).MoveToOuterDisposeScope();
    }

    /// <summary>A copy on <paramref name="device"/>; this instance is unchanged.</summary>
    public QuantizedTensor To(Device device) =>
        new(Codes.to(device), Parameters.To(device), Spec, Shape, OriginalDType, IsPacked);

    /// <inheritdoc />
    public void Dispose()
    {
        Codes.Dispose();
        Parameters.Dispose();
    }
}
