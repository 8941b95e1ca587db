using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using AdaTSQ.Methods.AdaTSQ.Search;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

public class BitWidthSearchTests
{
    private static readonly double[] Gains = [0.5, 0.5, 10.0, 0.5, 0.5];

    private sealed class SyncProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }

    private static BitWidthSearchOptions Options(double budget, string? statePath = null) => new()
    {
        WeightBits = [3, 8],
        ActivationSpec = QuantSpec.FullPrecision,
        Budget = BitBudget.AverageWeightBits(budget),
        BeamWidth = 6,
        StatePath = statePath,
    };

    [Test]
    public void TheKnownSensitiveStepGetsTheMostBits()
    {
        using var model = new ToySearchModel(seed: 3);
        var options = Options(budget: 4.2);          // 5 steps: room for about one step at 8 bits, the rest at 3
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options).Run();

        var bits = result.Best.StepAverageBits;
        TestContext.Out.WriteLine($"best step bits: {string.Join(", ", bits.Select(b => b.ToString("F2")))}; MSE {result.Best.FinalMse:E3}");
        Assert.That(bits[2], Is.EqualTo(bits.Max()), "the sensitive step 2 has the most bits");
        Assert.That(bits[2], Is.GreaterThan(new[] { 0, 1, 3, 4 }.Max(s => bits[s])), "and strictly more than every other step");
        Assert.That(result.Best.AverageWeightBits, Is.LessThanOrEqualTo(4.2 + 1e-9));
        // The static reference at the same cost, the same average bits at every step, is worse.
        var sameCost = result.StaticReferences.Where(s => s.AverageWeightBits <= result.Best.AverageWeightBits + 1e-9).MinBy(s => s.FinalMse)!;
        Assert.That(result.Best.FinalMse, Is.LessThan(sameCost.FinalMse));
    }

    [TestCase(3.5)]
    [TestCase(4.0)]
    [TestCase(6.0)]
    public void TheBudgetIsNeverExceeded(double budget)
    {
        using var model = new ToySearchModel(seed: 4);
        var options = Options(budget) with { WeightBits = [3, 4, 6, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options).Run();
        Assert.That(result.Frontier, Is.Not.Empty);
        Assert.That(result.Frontier.Select(p => p.AverageWeightBits), Has.All.LessThanOrEqualTo(budget + 1e-9));
        Assert.That(result.Best.AverageWeightBits, Is.LessThanOrEqualTo(budget + 1e-9));
        // The best is the frontier's lowest error, and the frontier is non-dominated.
        Assert.That(result.Best.FinalMse, Is.EqualTo(result.Frontier.Min(p => p.FinalMse)));
        Assert.That(ParetoFront.NonDominated(result.Frontier.Select(p => (p.FinalMse, p.AverageWeightBits)).ToList()), Has.Count.EqualTo(result.Frontier.Count));
    }

    [Test]
    public void MemoryAndBitOperationBudgetsHold()
    {
        using var model = new ToySearchModel(seed: 5);
        var options = Options(8) with { WeightBits = [3, 4, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);

        long w4 = layers.Sum(l => l.GetWeightVersion(options.ConfigFor(4).Weight).StorageBytes);
        var memory = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.WeightMemory(w4) }).Run();
        Assert.That(memory.Frontier.Select(p => p.WeightMemoryBytes), Has.All.LessThanOrEqualTo(w4));

        var full = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.AverageWeightBits(8) }).Run();
        double bops = full.StaticReferences.Single(s => s.AverageWeightBits == 8).AverageBitOperations * 0.6;
        var limited = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.AverageBitOperations(bops) }).Run();
        Assert.That(limited.Frontier.Select(p => p.AverageBitOperations), Has.All.LessThanOrEqualTo(bops * (1 + 1e-9)));
        Assert.That(limited.Best.AverageBitOperations, Is.GreaterThan(0));
    }

    [Test]
    public void ABudgetNoPolicyMeetsIsAClearError()
    {
        using var model = new ToySearchModel(seed: 6);
        var options = Options(2.5);
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var e = Assert.Throws<BudgetException>(() => new BitWidthSearch(layers, trajectories, options).Run());
        Assert.That(e!.Message, Does.Contain("cannot be met").And.Contain("avg weight bits ≤ 2.5").And.Contain("3"));
        Assert.That(layers.All(l => l.Policy is null), "the layers' policies are restored");
    }

    [Test]
    public void LayersWithoutTheSearchSpaceVersionsAreRefused()
    {
        using var model = new ToySearchModel(seed: 6);
        var layers = model.Quantize(Options(4));                    // W3 and W8 only
        using var trajectories = model.Trajectories(Gains);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new BitWidthSearch(layers, trajectories, Options(4) with { WeightBits = [3, 4, 8] }));
        Assert.That(e!.Message, Does.Contain("fc1").And.Contain("W4"));
    }

    [Test]
    public void AResumedSearchGivesTheSameResultAsAnUninterruptedOne()
    {
        string state = Path.Combine(Path.GetTempPath(), $"adatsq-search-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var model = new ToySearchModel(seed: 7);
            var options = Options(5) with { WeightBits = [3, 4, 6, 8] };
            var layers = model.Quantize(options);
            using var trajectories = model.Trajectories(Gains);
            var whole = new BitWidthSearch(layers, trajectories, options).Run();

            using var cts = new CancellationTokenSource();
            var cancelAfterTwo = new SyncProgress(p => { if (p.Stage == "search" && p.Completed == 2) cts.Cancel(); });
            Assert.Throws<OperationCanceledException>(() => new BitWidthSearch(layers, trajectories, options with { StatePath = state }).Run(cancelAfterTwo, cts.Token));
            Assert.That(File.Exists(state));

            var resumed = new BitWidthSearch(layers, trajectories, options with { StatePath = state }).Run();
            Assert.That(resumed.ResumedStages, Is.EqualTo(2));
            Assert.That(resumed.Frontier, Has.Count.EqualTo(whole.Frontier.Count));
            for (int i = 0; i < whole.Frontier.Count; i++)
            {
                Assert.That(resumed.Frontier[i].FinalMse, Is.EqualTo(whole.Frontier[i].FinalMse));
                Assert.That(resumed.Frontier[i].StepAverageBits, Is.EqualTo(whole.Frontier[i].StepAverageBits));
            }
            for (int s = 0; s < Gains.Length; s++)
                foreach (var l in whole.Layers)
                    Assert.That(resumed.Best.Policy[s, l], Is.EqualTo(whole.Best.Policy[s, l]));

            // A state written by another search is refused, not silently reused.
            var other = options with { StatePath = state, BeamWidth = 3 };
            var e = Assert.Throws<SearchStateException>(() => new BitWidthSearch(layers, trajectories, other).Run());
            Assert.That(e!.Message, Does.Contain(state).And.Contain("different search"));
        }
        finally
        {
            File.Delete(state);
        }
    }

    [Test]
    public void TheReturnedPolicyReproducesItsMeasuredError()
    {
        using var model = new ToySearchModel(seed: 8);
        var options = Options(5) with { WeightBits = [3, 4, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options).Run();

        foreach (var layer in layers) layer.Policy = result.Best.Policy;
        using var fpRun = Run(model, trajectories, quantized: false, layers);
        using var qRun = Run(model, trajectories, quantized: true, layers);
        double mse = (qRun - fpRun).square().mean().item<float>();
        // The search ran these samples batched with other paths: float32 sums in another order, hence not bit-equal.
        Assert.That(mse, Is.EqualTo(result.Best.FinalMse).Within(1e-4 * result.Best.FinalMse));
        Assert.That(result.ModelEvaluations, Is.GreaterThan(Gains.Length));
    }

    [Test]
    public void TheBuilderQuantizesEveryBitWidthOnceSearchesAndKeepsOnlyTheUsedVersions()
    {
        using var model = new ToySearchModel(seed: 9);
        using var trajectories = model.Trajectories(Gains);
        var result = new QuantizationBuilder().ForModel(model)
            .Weights(bits: 8, groupSize: 16)                  // the template: per-group weights; the search varies the bits
            .SearchBitWidths(bits: [3, 4, 8], budget: BitBudget.AverageWeightBits(4.5), beamWidth: 4, trajectories)
            .Build().Apply();

        Assert.That(result.Search, Is.Not.Null);
        Assert.That(result.Policy, Is.SameAs(result.Search!.Best.Policy));
        Assert.That(result.Search!.Best.AverageWeightBits, Is.LessThanOrEqualTo(4.5 + 1e-9));
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
        {
            Assert.That(layer.Policy, Is.SameAs(result.Policy));
            var used = result.Policy.ConfigsFor(layer.LayerName).Select(c => c.Weight).ToHashSet();
            Assert.That(layer.WeightVersions, Is.EquivalentTo(used), "only the versions some step uses are kept");
            Assert.That(used.All(spec => spec.GroupSize == 16));
        }
        Assert.That(result.Layers.Select(r => r.Config.Weight).Distinct().Count(), Is.LessThanOrEqualTo(3));
        result.Restore();

        var both = new QuantizationBuilder().ForModel(model).Policy(result.Policy)
            .SearchBitWidths(bits: [3, 8], budget: BitBudget.AverageWeightBits(4), beamWidth: 2, trajectories);
        Assert.That(Assert.Throws<QuantizationConfigurationException>(() => both.Build())!.Message, Does.Contain("SearchBitWidths"));

        var impossible = new QuantizationBuilder().ForModel(model)
            .SearchBitWidths(bits: [4, 8], budget: BitBudget.AverageWeightBits(3), beamWidth: 2, trajectories).Build();
        Assert.Throws<BudgetException>(() => impossible.Apply());
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "a failed search leaves the model as it was");
    }

    [Test]
    public void TheFullPipelineComposesFisherCalibrationGptqAndTheSearch()
    {
        using var model = new ToySearchModel(seed: 11);
        using var trajectories = model.Trajectories(Gains);
        var stepper = (ToySearchModel.GainSampler)trajectories.Sampler;
        // Calibration: the toy sampler's own trajectories (it sets the TimestepContext at every step).
        TrajectorySampler run = (m, noise, labels, o, ct) =>
        {
            var x = noise.clone();
            for (int k = 0; k < stepper.StepCount; k++) { var next = stepper.Step(m, x, labels, k); x.Dispose(); x = next; }
            return x;
        };
        var source = new TrajectoryCalibrationSource((x, t, y) => model.call(x, t, y), run, [1, 4, 4], 1, CPU, new TrajectoryCalibrationOptions { Samples = 16, BatchSize = 8, Seed = 3 });
        // A temporal Fisher that makes step 2 the sensitive one (as its gain does).
        var fisherValues = new double[Gains.Length, 2];
        for (int k = 0; k < Gains.Length; k++) { fisherValues[k, 0] = Gains[k] * Gains[k]; fisherValues[k, 1] = Gains[k] * Gains[k]; }
        var fisher = new TemporalFisher(Enumerable.Range(0, Gains.Length).Select(stepper.StepInfo).ToList(), ["fc1", "fc2"], fisherValues, samplesPerStep: 1);

        var result = new QuantizationBuilder().ForModel(model)
            .CalibrationData(source)
            .UseFisherCalibration(fisher)
            .UseHessianOptimization()
            .SearchBitWidths(bits: [3, 8], budget: BitBudget.AverageWeightBits(4.2), beamWidth: 6, trajectories)
            .Build().Apply();

        Assert.That(result.QuantizerName, Does.Contain("GPTQ"));
        Assert.That(result.Layers.All(r => r.OutputSquaredError is > 0), "GPTQ reports feed the sensitivity");
        var bits = result.Search!.Best.StepAverageBits;
        Assert.That(bits[2], Is.GreaterThan(new[] { 0, 1, 3, 4 }.Max(s => bits[s])), "the sensitive step gets the bits");
        Assert.That(result.Search!.Best.AverageWeightBits, Is.LessThanOrEqualTo(4.2 + 1e-9));
        result.Restore();
    }

    [Test]
    public void TheFullPipelineRunsTheCrossLayerSensitivityAndTheRefinement()
    {
        using var model = new ToySearchModel(seed: 12);
        using var trajectories = model.Trajectories(Gains);
        var stepper = (ToySearchModel.GainSampler)trajectories.Sampler;
        TrajectorySampler run = (m, noise, labels, o, ct) =>
        {
            var x = noise.clone();
            for (int k = 0; k < stepper.StepCount; k++) { var next = stepper.Step(m, x, labels, k); x.Dispose(); x = next; }
            return x;
        };
        var source = new TrajectoryCalibrationSource((x, t, y) => model.call(x, t, y), run, [1, 4, 4], 1, CPU, new TrajectoryCalibrationOptions { Samples = 16, BatchSize = 8, Seed = 3 });
        // fc2's Fisher is 10× fc1's at every step; both peak at the sensitive step 2.
        var fisherValues = new double[Gains.Length, 2];
        for (int k = 0; k < Gains.Length; k++) { fisherValues[k, 0] = Gains[k] * Gains[k]; fisherValues[k, 1] = 10 * Gains[k] * Gains[k]; }
        var fisher = new TemporalFisher(Enumerable.Range(0, Gains.Length).Select(stepper.StepInfo).ToList(), ["fc1", "fc2"], fisherValues, samplesPerStep: 1);
        var options = new BitWidthSearchOptions
        {
            WeightBits = [3, 8], Budget = BitBudget.AverageWeightBits(4.2), BeamWidth = 6,
            Sensitivity = SensitivityMode.CrossLayerFisher, RefinementRounds = 4,
        };

        var result = new QuantizationBuilder().ForModel(model)
            .CalibrationData(source)
            .UseFisherCalibration(fisher)
            .UseHessianOptimization()
            .SearchBitWidths(trajectories, options)
            .Build().Apply();

        Assert.That(result.Layers.All(r => r.InputSecondMomentTrace is > 0 && r.OutputSquaredError is >= 0), "GPTQ reports carry the Hessian's trace");
        var search = result.Search!;
        Assert.That(search.Options.Sensitivity, Is.EqualTo(SensitivityMode.CrossLayerFisher));
        Assert.That(search.Refinement, Is.Not.Null);
        Assert.That(search.Refinement!.Rounds, Is.InRange(1, 4));
        Assert.That(result.Policy, Is.SameAs(search.Best.Policy));
        Assert.That(search.Best.FinalMse, Is.LessThanOrEqualTo(search.BeamBest.FinalMse * (1 + 1e-6)));
        Assert.That(search.Best.AverageWeightBits, Is.LessThanOrEqualTo(4.2 + 1e-9));
        Assert.That(search.ToJson(), Does.Contain("\"refinement\"").And.Contain("CrossLayerFisher"));
        Assert.That(search.FormatSummary(), Does.Contain("refinement:"));
        result.Restore();
    }

    [Test]
    public void ASearchFreesEveryTensorItMakes()
    {
        using var model = new ToySearchModel(seed: 10);
        var options = Options(5) with { WeightBits = [3, 4, 8], BeamWidth = 3 };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        using var heldOut = model.Trajectories(Gains, samples: 3, seed: 5);
        var refined = options with { RefinementRounds = 2, EvaluateStaticReferences = true };
        new BitWidthSearch(layers, trajectories, options).Run();
        long live = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) new BitWidthSearch(layers, trajectories, options).Run();
        Assert.That(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, Is.EqualTo(live), "tensors alive after three more searches");
        for (int i = 0; i < 2; i++) new BitWidthSearch(layers, trajectories, refined, heldOut: heldOut).Run();
        Assert.That(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, Is.EqualTo(live), "tensors alive after two searches with refinement and held-out selection");
    }

    [Test]
    public void WithHeldOutTrajectoriesThePolicyIsSelectedByItsHeldOutError()
    {
        using var model = new ToySearchModel(seed: 31, middle: true);
        var options = Options(5) with { WeightBits = [3, 4, 8], EvaluateStaticReferences = true, RefinementRounds = 3 };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains, samples: 2, seed: 1);
        using var heldOut = model.Trajectories(Gains, samples: 6, seed: 2);
        var result = new BitWidthSearch(layers, trajectories, options, heldOut: heldOut).Run();

        Assert.That(result.HeldOutSamples, Is.EqualTo(6));
        Assert.That(result.Frontier.Concat(result.StaticReferences).All(p => p.HeldOutMse is > 0 && p.HeldOutPsnr is not null), Is.True, "every point is scored on the held-out set");
        Assert.That(result.BeamBest.HeldOutMse, Is.EqualTo(result.Frontier.Min(p => p.HeldOutMse)));
        if (result.Refined is { } refined)
            Assert.That(result.Best, Is.SameAs(refined.HeldOutMse <= result.BeamBest.HeldOutMse ? refined : result.BeamBest));
        else Assert.That(result.Best, Is.SameAs(result.BeamBest));

        // The held-out error is that of the returned policy run on its own over the held-out noise.
        foreach (var layer in layers) layer.Policy = result.Best.Policy;
        using var fpRun = Run(model, heldOut, quantized: false, layers);
        using var qRun = Run(model, heldOut, quantized: true, layers);
        double mse = (qRun - fpRun).square().mean().item<float>();
        Assert.That(mse, Is.EqualTo(result.Best.HeldOutMse!.Value).Within(1e-4 * mse));
        Assert.That(result.ToCsv().Split('\n')[1].Split(',').Length, Is.EqualTo(9));
        Assert.That(result.FormatSummary(), Does.Contain("held-out PSNR (6 samples)"));
        TestContext.Out.WriteLine($"2 search / 6 held-out trajectories: beam pick search PSNR {result.BeamBest.FinalPsnr:F2} dB, held-out {result.BeamBest.HeldOutPsnr:F2} dB; " +
            $"frontier's best on the search set would have been held-out {result.Frontier.MinBy(p => p.FinalMse)!.HeldOutPsnr:F2} dB");
    }

    [Test]
    public void WithoutHeldOutTrajectoriesNothingIsScoredOnThemAndAnotherSamplerIsRefused()
    {
        using var model = new ToySearchModel(seed: 32);
        var options = Options(5);
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options).Run();
        Assert.That(result.HeldOutSamples, Is.Zero);
        Assert.That(result.Frontier.All(p => p.HeldOutMse is null && p.SelectionMse == p.FinalMse), Is.True);
        Assert.That(result.FormatSummary(), Does.Not.Contain("held-out"));

        using var shorter = model.Trajectories([0.5, 0.5, 10.0], samples: 3, seed: 2);
        var error = Assert.Throws<QuantizationConfigurationException>(() => _ = new BitWidthSearch(layers, trajectories, options, heldOut: shorter))!;
        Assert.That(error.Message, Does.Contain("held-out trajectories' sampler has 3 steps"));
    }

    private static Tensor Run(ToySearchModel model, SearchTrajectories t, bool quantized, IReadOnlyList<QuantLinear> layers)
    {
        var policies = layers.Select(l => l.Policy).ToArray();
        if (!quantized) foreach (var l in layers) l.Policy = null;
        try
        {
            var x = t.Noise.clone();
            for (int s = 0; s < t.Sampler.StepCount; s++)
            {
                var next = t.Sampler.Step(t.Model, x, t.Labels, s);
                x.Dispose();
                x = next;
            }
            return x;
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Policy = policies[i];
        }
    }
}
