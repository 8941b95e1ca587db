using AdaTSQ.Abstractions;
using AdaTSQ.Methods.QDit;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Tests.Methods.QDit;

public class GroupSizeEvolutionTests
{
    private static readonly int[] Groups = [16, 32, 64, 128];

    /// <summary>The loss Σ a_l · g_l: error grows with the group size, and the weights a_l make some layers matter more than others.</summary>
    private static readonly double[] Sensitivity = [9.0, 1.0, 5.0, 0.5, 3.0, 7.0];

    private static readonly QDitOptions Search = new()
    {
        Population = 20, Generations = 15, SelectCount = 5, MutationCount = 8, CrossoverCount = 6, MutationProbability = 0.2, Seed = 7,
    };

    private static double Loss(IReadOnlyList<int> groups) => groups.Select((g, l) => Sensitivity[l] * g).Sum();

    private static IReadOnlyList<IReadOnlyList<int>> Choices(int layers) => Enumerable.Repeat((IReadOnlyList<int>)Groups, layers).ToList();

    /// <summary>Every assignment of <paramref name="layers"/> layers over <see cref="Groups"/>.</summary>
    private static IEnumerable<int[]> All(int layers) => layers == 0 ? [[]] : All(layers - 1).SelectMany(rest => Groups.Select(g => rest.Append(g).ToArray()));

    private static GroupSizeCost MeanCost(int layers) =>
        new(QDitConstraint.MeanGroupSize, Enumerable.Repeat(128L, layers).ToList(), Enumerable.Repeat(1.0, layers).ToList(), Enumerable.Repeat(64, layers).ToList());

    [Test]
    public void FindsTheKnownOptimumOfASmallObjectiveUnderTheConstraint()
    {
        var cost = MeanCost(Sensitivity.Length);
        var optimum = All(Sensitivity.Length).Where(cost.IsLegal).MinBy(Loss)!;
        var uniform = Enumerable.Repeat(64, Sensitivity.Length).ToArray();
        Assert.That(Loss(optimum), Is.LessThan(Loss(uniform) - 1e-9), "the optimum is not the uniform reference (else the test proves nothing)");

        var found = new GroupSizeEvolution(Choices(Sensitivity.Length), cost.IsLegal, Search).Run(Loss, [uniform]);

        TestContext.Out.WriteLine($"found [{string.Join(", ", found.Best)}] loss {found.BestLoss:G6} after {found.Evaluations} evaluations; optimum [{string.Join(", ", optimum)}] {Loss(optimum):G6}");
        Assert.That(found.Best, Is.EqualTo(optimum));
        Assert.That(found.BestLoss, Is.EqualTo(Loss(optimum)));
        Assert.That(found.Evaluations, Is.LessThan(All(Sensitivity.Length).Count(cost.IsLegal)), "fewer evaluations than enumerating the legal candidates");
        Assert.That(found.BestLossPerGeneration, Is.Ordered.Descending, "the best loss never gets worse (elitist parents)");
    }

    [Test]
    public void TheSameSeedGivesTheSameSearchAndAnotherSeedAnotherOne()
    {
        var cost = MeanCost(Sensitivity.Length);
        var uniform = Enumerable.Repeat(64, Sensitivity.Length).ToArray();
        EvolutionOutcome Run(int seed) => new GroupSizeEvolution(Choices(Sensitivity.Length), cost.IsLegal, Search with { Seed = seed, Generations = 3 }).Run(Loss, [uniform]);
        static string Trace(EvolutionOutcome o) => string.Join(";", o.Losses.Select(e => string.Join(",", e.Candidate)));

        Assert.That(Trace(Run(3)), Is.EqualTo(Trace(Run(3))));
        Assert.That(Trace(Run(4)), Is.Not.EqualTo(Trace(Run(3))));
    }

    [TestCase(QDitConstraint.MeanGroupSize)]
    [TestCase(QDitConstraint.ScaleOperations)]
    public void NoCandidateThatViolatesTheConstraintIsEverEvaluated(QDitConstraint constraint)
    {
        // Layers of different widths and sizes: per channel (0) is a group of K; the scale-operation cost weights by MACs.
        long[] k = [128, 256, 128, 512, 128, 256];
        double[] macs = [1, 4, 1, 8, 2, 3];
        IReadOnlyList<IReadOnlyList<int>> choices = k.Select(kk => (IReadOnlyList<int>)new[] { 16, 32, 64, 0 }).ToList();
        var reference = Enumerable.Repeat(64, k.Length).ToArray();
        var cost = new GroupSizeCost(constraint, k, macs, reference);
        var seen = new List<IReadOnlyList<int>>();
        // The loss prefers small groups (which the constraint forbids in excess), so the search presses against the bound.
        double Tempting(IReadOnlyList<int> g)
        {
            seen.Add(g.ToArray());
            return -g.Select((x, l) => macs[l] / GroupSizeCost.Effective(x, k[l])).Sum();
        }
        var found = new GroupSizeEvolution(choices, cost.IsLegal, Search with { Seed = 11 }).Run(Tempting, [reference]);

        Assert.That(seen, Is.Not.Empty);
        Assert.That(seen.Where(g => !cost.IsLegal(g)), Is.Empty);
        Assert.That(cost.IsLegal(found.Best));
        Assert.That(seen.Select(g => string.Join(",", g)), Is.Unique, "each candidate is evaluated once");
        Assert.That(found.Evaluations, Is.EqualTo(seen.Count));
    }

    [Test]
    public void ProgressIsReportedPerEvaluationAndCancellationStopsTheSearch()
    {
        var cost = MeanCost(Sensitivity.Length);
        var uniform = Enumerable.Repeat(64, Sensitivity.Length).ToArray();
        var reports = new List<QuantizationProgress>();
        var outcome = new GroupSizeEvolution(Choices(Sensitivity.Length), cost.IsLegal, Search with { Generations = 2 })
            .Run(Loss, [uniform], new SyncProgress(reports.Add));
        Assert.That(reports.Select(r => r.Completed), Is.EqualTo(Enumerable.Range(1, outcome.Evaluations)));
        Assert.That(reports.Select(r => r.Stage), Has.All.EqualTo("Q-DiT search"));

        using var cts = new CancellationTokenSource();
        int calls = 0;
        Assert.Throws<OperationCanceledException>(() => new GroupSizeEvolution(Choices(Sensitivity.Length), cost.IsLegal, Search)
            .Run(g => { if (++calls == 5) cts.Cancel(); return Loss(g); }, [uniform], null, cts.Token));
        Assert.That(calls, Is.EqualTo(5), "no evaluation after the cancellation");
    }

    [Test]
    public void BadOptionsAndPresetsAreRefusedWithTheirNames()
    {
        var cost = MeanCost(2);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new GroupSizeEvolution(Choices(2), cost.IsLegal,
            new QDitOptions { Population = 4, MutationCount = 3, CrossoverCount = 3, MutationProbability = 1.5, ReferenceGroupSize = 48 }));
        Assert.That(e!.Problems, Has.Some.Contains("exceed the population 4"));
        Assert.That(e.Problems, Has.Some.Contains("mutation probability 1.5"));
        Assert.That(e.Problems, Has.Some.Contains("reference group size 48"));
        Assert.Throws<ArgumentException>(() => new GroupSizeEvolution([[16], []], cost.IsLegal, Search));

        var search = new GroupSizeEvolution(Choices(2), cost.IsLegal, Search);
        var illegal = Assert.Throws<ArgumentException>(() => search.Run(Loss, [new[] { 16, 16 }]));
        Assert.That(illegal!.Message, Does.Contain("16,16").And.Contain("violates the constraint"));
        Assert.Throws<ArgumentException>(() => search.Run(Loss, [new[] { 64, 48 }]));
    }

    [Test]
    public void TheCostOfTheReferenceIsTheLimitAndPerChannelCountsAsAGroupOfK()
    {
        var scale = new GroupSizeCost(QDitConstraint.ScaleOperations, [128, 512], [1000, 4000], [64, 64]);
        Assert.That(scale.Limit, Is.EqualTo(1000.0 / 64 + 4000.0 / 64).Within(1e-9));
        Assert.That(scale.Measure([32, 0]), Is.EqualTo(1000.0 / 32 + 4000.0 / 512).Within(1e-9));
        Assert.That(scale.IsLegal([32, 0]), Is.True, "the big layer per channel pays for the small one's finer groups");
        Assert.That(scale.IsLegal([64, 32]), Is.False);
        var mean = new GroupSizeCost(QDitConstraint.MeanGroupSize, [128, 512], [1, 1], [64, 64]);
        Assert.That(mean.Measure([32, 0]), Is.EqualTo((32 + 512) / 2.0));
        Assert.That(mean.IsLegal([32, 64]), Is.False);
        Assert.Throws<ArgumentException>(() => new GroupSizeCost(QDitConstraint.MeanGroupSize, [128], [1, 1], [64]));
        Assert.Throws<ArgumentException>(() => scale.Measure([64]));
    }

    private sealed class SyncProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }
}
