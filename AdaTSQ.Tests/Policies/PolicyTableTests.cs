using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

public class PolicyTableTests
{
    [Test]
    public void OneLetterPerStepPerLayerWithALegendAndTheMeanBitsPerStep()
    {
        var policy = TimeGroupedTimestepPolicy.Even(10, [new(W4A8), new(W8A8, new Dictionary<string, LayerQuantConfig> { ["head"] = Odd })]);
        string table = policy.FormatTable(Layers, 10);
        var lines = table.Split(Environment.NewLine);
        // Letters go by increasing weight bits: a = W3A6 (Odd), b = W4A8, c = W8A8.
        Assert.That(lines, Has.Some.Match(@"^blocks\.0\.attn\.qkv +bbbbbccccc$"));
        Assert.That(lines, Has.Some.Match(@"^head +bbbbbaaaaa$"));
        Assert.That(lines, Has.Some.Match(@"^  a  W3A6 +weight int3 g16 asym clip0\.9, activation int6 per-tensor asym static clip0\.75$"));
        Assert.That(lines, Has.Some.Match(@"^  b  W4A8 +weight int4 per-channel sym"));
        Assert.That(lines, Has.Some.Match(@"^  c  W8A8 +weight int8 per-channel sym"));
        // Steps 0–4: all W4 → 4.00; steps 5–9: (8 + 8 + 3)/3 = 6.33.
        Assert.That(table, Does.Contain("0–4: 4.00 · 5–9: 6.33").And.Contain("average over the 10 steps: 5.17").And.Contain("unweighted"));
    }

    [Test]
    public void FiftyStepsStayNarrowAndAShorterSamplerIsMappedByPosition()
    {
        var policy = Dynamic(50);
        string table = policy.FormatTable(Layers, 50);
        var lines = table.Split(Environment.NewLine);
        Assert.That(lines.Where(l => l.StartsWith("blocks.", StringComparison.Ordinal) || l.StartsWith("head", StringComparison.Ordinal)).Max(l => l.Length),
            Is.LessThanOrEqualTo("blocks.0.attn.qkv".Length + 2 + 54), "50 letters in 5 blocks of 10");
        Assert.That(lines, Has.Some.Match(@"^ +0 +10 +20 +30 +40$"), "block header");
        // Layer 0 at step k: W8A8 (c) when k % 3 == 0, W4A8 (b) when 1, Odd (a) when 2.
        Assert.That(lines, Has.Some.Match(@"^blocks\.0\.attn\.qkv +cbacbacbac bacbacbacb acbacbacba cbacbacbac bacbacbacb$"));
        // The same policy printed for a 3-step sampler: steps 0, 1, 2 use the policy's steps 0, 25, 49.
        string[] expected = [.. new[] { 0, 25, 49 }.Select(k => policy[k, "head"].ToString())];
        var legend = table.Split(Environment.NewLine).Where(l => l.StartsWith("  ", StringComparison.Ordinal) && l.Length > 3 && l[3] == ' ').ToDictionary(l => l[2], l => l[5..].Split(' ')[0]);
        string row = policy.FormatTable(Layers, 3).Split(Environment.NewLine).Single(l => l.StartsWith("head", StringComparison.Ordinal));
        Assert.That(row[^3..].Select(c => legend[c]), Is.EqualTo(expected));
    }
}
