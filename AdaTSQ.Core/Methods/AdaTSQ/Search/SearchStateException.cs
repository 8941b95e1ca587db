using AdaTSQ.Abstractions;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>A saved search state that cannot be resumed (unreadable, or written by a different search).</summary>
public sealed class SearchStateException : AdaTSQException
{
    /// <summary>Creates the exception.</summary>
    public SearchStateException(string message) : base(message) { }

    /// <summary>Creates the exception with the error that caused it.</summary>
    public SearchStateException(string message, Exception inner) : base(message, inner) { }
}
