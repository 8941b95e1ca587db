namespace AdaTSQ.Abstractions;

/// <summary>
/// Base type of every error AdaTSQ.NET raises for bad input or a bad configuration. Catch it to
/// handle all of the library's own errors; the derived types say which stage refused.
/// </summary>
public class AdaTSQException : Exception
{
    /// <summary>Creates the exception with a message naming the problem.</summary>
    public AdaTSQException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public AdaTSQException(string message, Exception inner) : base(message, inner) { }
}
