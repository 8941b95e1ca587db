using AdaTSQ.Kernels;

namespace AdaTSQ.Tests.Kernels;

public class ReferenceGemmTests
{
    [Test]
    public void Int8MatchesADirectSum()
    {
        var rng = new Random(4);
        int m = 5, n = 7, k = 33;
        var a = Enumerable.Range(0, m * k).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var b = Enumerable.Range(0, n * k).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var c = new int[m * n];
        ReferenceGemm.Int8(a, b, c, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Assert.That(c[i * n + j], Is.EqualTo(Enumerable.Range(0, k).Sum(p => a[i * k + p] * b[j * k + p])));
    }

    [Test]
    public void W4A8EqualsW8A8OnTheUnpackedWeights()
    {
        var rng = new Random(5);
        int m = 3, n = 4, k = 9;
        var a = Enumerable.Range(0, m * k).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        var w = Enumerable.Range(0, n * k).Select(_ => (sbyte)rng.Next(-8, 8)).ToArray();
        int rowBytes = (k + 1) / 2;
        var packed = new byte[n * rowBytes];
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
                packed[j * rowBytes + p / 2] |= (byte)((w[j * k + p] & 0xF) << (p % 2 == 0 ? 0 : 4));
        var sa = new[] { 0.5f, 0.25f, 2f };
        var sb = new[] { 0.1f, 0.2f, 0.3f, 0.4f };
        var c8 = new float[m * n];
        var c4 = new float[m * n];
        ReferenceGemm.W8A8(a, sa, w, sb, c8, m, n, k);
        ReferenceGemm.W4A8(a, sa, packed, sb, c4, m, n, k);
        Assert.That(c4, Is.EqualTo(c8));
        Assert.That(c8[1 * n + 2], Is.EqualTo(Enumerable.Range(0, k).Sum(p => a[k + p] * w[2 * k + p]) * 0.25f * 0.3f).Within(1e-4f));
    }

    [Test]
    public void WrongLengthsAreRefusedWithTheExpectedSize()
    {
        var error = Assert.Throws<ArgumentException>(() => ReferenceGemm.Int8(new sbyte[6], new sbyte[6], new int[4], 2, 2, 4))!;
        Assert.That(error.Message, Does.Contain("M×K = 8"));
    }
}
