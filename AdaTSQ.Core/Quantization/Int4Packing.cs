using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Packs integer codes of at most 4 bits two per byte (the element at an even column in the low
/// nibble, the next one in the high nibble) and unpacks them. Signed codes are stored as 4-bit two's
/// complement. An odd last dimension is padded with one zero code; unpacking drops it again.
/// </summary>
public static class Int4Packing
{
    /// <summary>Packs codes (any integer or float dtype holding integers in range) along the last dimension into uint8.</summary>
    /// <param name="codes">Codes in [−8, 7] when <paramref name="signed"/>, else in [0, 15].</param>
    /// <param name="signed">Whether the codes are signed.</param>
    public static Tensor Pack(Tensor codes, bool signed)
    {
        using var scope = torch.NewDisposeScope();
        var c = codes.to(ScalarType.Int16);
        (long lo, long hi) = signed ? (-8L, 7L) : (0L, 15L);
        if (c.numel() > 0 && (c.min().item<short>() < lo || c.max().item<short>() > hi))
            throw new ArgumentOutOfRangeException(nameof(codes), $"4-bit {(signed ? "signed" : "unsigned")} codes must lie in [{lo}, {hi}].");
        long cols = c.shape[^1];
        if (cols % 2 == 1) c = torch.nn.functional.pad(c, [0, 1]);
        var pairs = c.reshape([.. c.shape[..^1], c.shape[^1] / 2, 2]);
        var low = pairs.select(-1, 0).remainder(16);
        var high = pairs.select(-1, 1).remainder(16);
        return (low + high * 16).to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>Unpacks uint8 bytes into int8 codes, <paramref name="columns"/> along the last dimension.</summary>
    public static Tensor Unpack(Tensor packed, long columns, bool signed)
    {
        if (packed.dtype != ScalarType.Byte)
            throw new ArgumentException($"Packed int4 data must be uint8, got {packed.dtype}.", nameof(packed));
        if ((columns + 1) / 2 != packed.shape[^1])
            throw new ArgumentException($"{columns} columns need {(columns + 1) / 2} packed bytes per row, found {packed.shape[^1]}.", nameof(columns));
        using var scope = torch.NewDisposeScope();
        var p = packed.to(ScalarType.Int16);
        var low = p.remainder(16);
        var high = p.floor_divide(16);
        var both = torch.stack([low, high], dim: -1).reshape([.. packed.shape[..^1], packed.shape[^1] * 2]);
        if (signed) both = both - (both >= 8).to(ScalarType.Int16) * 16;
        if (both.shape[^1] != columns) both = both.narrow(-1, 0, columns);
        return both.to(ScalarType.Int8).MoveToOuterDisposeScope();
    }
}
