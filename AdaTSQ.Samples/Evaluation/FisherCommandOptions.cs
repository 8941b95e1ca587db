using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>
/// The temporal-Fisher options <c>evaluate</c> and <c>compare</c> share (--fisher-samples, --fisher-data,
/// --fisher-temperature, --fisher-floor, --fisher-shared, --fisher-use, --fisher-fraction), parsed in one place.
/// </summary>
internal sealed record FisherCommandOptions(int SamplesPerStep, string Data, FisherWeighting Weighting, FisherUse Use, double StepFraction)
{
    /// <summary>Reads the options from the command line, with the documented defaults.</summary>
    /// <exception cref="ArgumentException">--fisher-data is neither real nor generated.</exception>
    public static FisherCommandOptions Parse(string[] args)
    {
        string data = Program.Option(args, "--fisher-data") ?? "real";
        if (data is not ("real" or "generated")) throw new ArgumentException($"--fisher-data {data}: expected real or generated.");
        var weighting = new FisherWeighting
        {
            Temperature = Program.DoubleOption(args, "--fisher-temperature", 1.0),
            Floor = Program.DoubleOption(args, "--fisher-floor", 0.1),
            PerLayer = !args.Contains("--fisher-shared"),
        };
        return new FisherCommandOptions(Program.IntOption(args, "--fisher-samples", 16), data, weighting,
            Enum.Parse<FisherUse>(Program.Option(args, "--fisher-use") ?? "weight", ignoreCase: true), Program.DoubleOption(args, "--fisher-fraction", 0.25));
    }
}
