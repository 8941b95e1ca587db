using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AdaTSQ.Methods.QDit;

/// <summary>What Q-DiT's group-size search found on the model, next to the uniform reference it had to beat.</summary>
/// <param name="Assignment">The chosen group size per layer.</param>
/// <param name="Reference">The uniform reference assignment.</param>
/// <param name="Constraint">The bounded cost.</param>
/// <param name="Cost">The chosen assignment's cost (<see cref="GroupSizeCost.Measure"/>).</param>
/// <param name="CostLimit">The reference's cost, which the chosen one is no worse than.</param>
/// <param name="FinalMse">MSE of the chosen assignment's final samples against the full-precision ones (the loss).</param>
/// <param name="FinalPsnr">The same as PSNR (dB, mean over the search trajectories).</param>
/// <param name="ReferenceMse">The reference's loss.</param>
/// <param name="ReferencePsnr">The reference's PSNR (dB).</param>
/// <param name="Evaluations">Distinct assignments evaluated (each one full trajectory set).</param>
/// <param name="ModelCalls">Model evaluations made by the search (one per sampling step per assignment, plus the full-precision trajectory and the MAC count).</param>
/// <param name="Trajectories">Trajectories per evaluation.</param>
/// <param name="BestLossPerGeneration">The best loss when each generation's parents were chosen, then at the end.</param>
/// <param name="WallTime">The search's own time (without the quantization before it).</param>
public sealed record QDitSearchResult(GroupSizeAssignment Assignment, GroupSizeAssignment Reference, QDitConstraint Constraint, double Cost, double CostLimit,
    double FinalMse, double FinalPsnr, double ReferenceMse, double ReferencePsnr, int Evaluations, long ModelCalls, int Trajectories,
    IReadOnlyList<double> BestLossPerGeneration, TimeSpan WallTime)
{
    /// <summary>Layer calls of the search that ran on the integer kernels (<see cref="QDitOptions.SearchOnIntegerKernels"/>); 0 when all were fake-quantized.</summary>
    public long IntegerKernelCalls { get; init; }

    /// <summary>A few lines: the search's cost and time, the chosen vs reference error, the group histogram.</summary>
    public string FormatSummary()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Q-DiT group-size search: {Evaluations} assignments × {Trajectories} trajectories, {ModelCalls} model calls ({(IntegerKernelCalls > 0 ? $"{IntegerKernelCalls} layer calls on the integer kernels" : "fake quantization")}), {WallTime.TotalSeconds:F1} s");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  constraint {Constraint}: chosen {Cost:G6} vs reference {CostLimit:G6}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  final MSE vs FP: chosen {FinalMse:E3} ({FinalPsnr:F2} dB) vs uniform reference {ReferenceMse:E3} ({ReferencePsnr:F2} dB)");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  chosen groups: {Assignment.Histogram()}; reference: {Reference.Histogram()}");
        return sb.ToString();
    }

    /// <summary>The result as JSON: the numbers above and both assignments (each in <see cref="GroupSizeAssignment"/>'s format).</summary>
    public string ToJson() => JsonSerializer.Serialize(new
    {
        constraint = Constraint.ToString(), cost = Cost, cost_limit = CostLimit,
        final_mse = FinalMse, final_psnr = FinalPsnr, reference_mse = ReferenceMse, reference_psnr = ReferencePsnr,
        evaluations = Evaluations, model_calls = ModelCalls, integer_kernel_calls = IntegerKernelCalls, trajectories = Trajectories, wall_seconds = WallTime.TotalSeconds,
        best_loss_per_generation = BestLossPerGeneration,
        assignment = JsonDocument.Parse(Assignment.ToJson()).RootElement,
        reference = JsonDocument.Parse(Reference.ToJson()).RootElement,
    }, new JsonSerializerOptions { WriteIndented = true });
}
