using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

public class IntegerQuantizationTests
{
    [TestCase(true, 6L)]
    [TestCase(true, 7L)]
    [TestCase(false, 6L)]
    [TestCase(false, 9L)]
    public void Int4PackUnpackRoundTrips(bool signed, long columns)
    {
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(11);
        var codes = signed ? torch.randint(-8, 8, [5, columns], generator: gen) : torch.randint(0, 16, [5, columns], generator: gen);
        var packed = Int4Packing.Pack(codes, signed);
        Assert.That(packed.dtype, Is.EqualTo(ScalarType.Byte));
        Assert.That(packed.shape, Is.EqualTo(new long[] { 5, (columns + 1) / 2 }));
        var back = Int4Packing.Unpack(packed, columns, signed);
        Assert.That(TestTensors.Identical(back.to(ScalarType.Int64), codes), Is.True);
    }

    [Test]
    public void Int4PackingPutsTheEvenColumnInTheLowNibble()
    {
        using var codes = torch.tensor(new long[] { 1, -2, 7, -8 }).reshape(1, 4);
        using var packed = Int4Packing.Pack(codes, signed: true);
        Assert.That(packed.data<byte>().ToArray(), Is.EqualTo(new byte[] { 0xE1, 0x87 }));
    }

    [Test]
    public void Int4PackingRefusesCodesOutOfRange()
    {
        using var codes = torch.tensor(new long[] { 0, 9 }).reshape(1, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => Int4Packing.Pack(codes, signed: true).Dispose());
    }

    [TestCase(8, true, 0)]
    [TestCase(8, false, 32)]
    [TestCase(4, true, 0)]
    [TestCase(4, false, 16)]
    [TestCase(3, true, 32)]
    [TestCase(2, false, 0)]
    public void IntegerFormDequantizesToTheFakeQuantizedTensor(int bits, bool symmetric, int group)
    {
        using var scope = torch.NewDisposeScope();
        var w = TestTensors.Randn(21, 24, 64);
        var spec = QuantSpec.Weight(bits, group, symmetric);
        using var q = QuantizedTensor.Quantize(w, spec);
        var fake = FakeQuantizer.QuantizeDequantize(w, spec);
        Assert.That(q.IsPacked, Is.EqualTo(bits <= 4));
        Assert.That(q.Codes.dtype, Is.EqualTo(bits <= 4 ? ScalarType.Byte : symmetric ? ScalarType.Int8 : ScalarType.Byte));
        Assert.That((q.Dequantize() - fake).abs().max().item<float>(), Is.LessThan(1e-6f));
    }

    [Test]
    public void PackedInt4StoresHalfTheBytesOfInt8()
    {
        using var w = TestTensors.Randn(2, 32, 64);
        using var q8 = QuantizedTensor.Quantize(w, QuantSpec.Weight(8));
        using var q4 = QuantizedTensor.Quantize(w, QuantSpec.Weight(4));
        long scales = 32 * sizeof(float);
        Assert.That(q8.StorageBytes, Is.EqualTo(32 * 64 + scales));
        Assert.That(q4.StorageBytes, Is.EqualTo(32 * 32 + scales));
    }
}
