using AdaTSQ.Abstractions;

namespace AdaTSQ.Quantization;

/// <summary>A quantization setting that cannot be used; the message lists every problem found.</summary>
public sealed class QuantSpecException : AdaTSQException
{
    /// <summary>Creates the exception from the problems found.</summary>
    public QuantSpecException(IReadOnlyList<string> problems)
        : base(problems.Count == 1 ? problems[0] : "Invalid quantization settings:" + Environment.NewLine + "  - " + string.Join(Environment.NewLine + "  - ", problems))
    {
        Problems = problems;
    }

    /// <summary>Each problem, one sentence each, naming the option and the value.</summary>
    public IReadOnlyList<string> Problems { get; }
}
