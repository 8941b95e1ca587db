using AdaTSQ.Abstractions;

namespace AdaTSQ.Policies;

/// <summary>A timestep policy file or JSON text that cannot be read: what is wrong and where.</summary>
public sealed class PolicyFormatException : AdaTSQException
{
    /// <summary>Creates the exception.</summary>
    public PolicyFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with the error that caused it.</summary>
    public PolicyFormatException(string message, Exception inner) : base(message, inner) { }
}
