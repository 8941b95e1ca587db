// snippet: search
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Pipeline;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void BitWidthSearchUnderABudget()
    {
        using var dit = TinyDiT();
        var images = TrainingImages(dit, 8);
        using var x0 = images.X0;
        using var labels = images.Labels;
        var (sampler, sampling, trajectories, fisher) = Calibration(dit, x0, labels, steps: 4);

        // snippet: search
        // The search scores policies on a few trajectories of their own (never your evaluation noise), step by step.
        using var searchSet = SearchTrajectories.ForDiT(dit, sampler.DdimSteps(sampling), samples: 8, seed: 7000);

        var result = new QuantizationBuilder()
            .ForModel(dit).Layers("blocks.*")
            .Activations(bits: 8)                               // the activation spec of every config (or PairActivationBits: W=A)
            .CalibrationData(trajectories)
            .UseFisherCalibration(fisher)
            .UseHessianOptimization()
            .SearchBitWidths(bits: [3, 4, 6, 8], budget: BitBudget.AverageWeightBits(4), beamWidth: 8, searchSet)
            .Build().Apply();

        var search = result.Search!;                        // the search's report (an extension property of this namespace)
        Console.Write(search.FormatSummary());              // frontier, best, static references, wall time, model calls
        File.WriteAllText("frontier.json", search.ToJson()); // also ToCsv(); result.Policy is the best policy
        // end snippet

        Assert.That(search.Frontier, Is.Not.Empty);
        Assert.That(search.Best.AverageWeightBits, Is.LessThanOrEqualTo(4 + 1e-9));
        Assert.That(result.Policy, Is.SameAs(search.Best.Policy));
        Assert.That(new FileInfo("frontier.json").Length, Is.GreaterThan(0));
        result.Restore();
    }
}
