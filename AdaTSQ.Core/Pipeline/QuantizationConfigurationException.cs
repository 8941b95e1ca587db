using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Pipeline;

/// <summary>A quantization plan that cannot run; the message lists every problem found at once.</summary>
public sealed class QuantizationConfigurationException : AdaTSQException
{
    /// <summary>Creates the exception from the problems found.</summary>
    public QuantizationConfigurationException(IReadOnlyList<string> problems)
        : base(problems.Count == 1 ? problems[0] : $"The quantization plan has {problems.Count} problems:" + Environment.NewLine + "  - " + string.Join(Environment.NewLine + "  - ", problems))
    {
        Problems = problems;
    }

    /// <summary>Each problem, one sentence each.</summary>
    public IReadOnlyList<string> Problems { get; }
}
