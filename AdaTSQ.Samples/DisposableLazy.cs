namespace AdaTSQ.Samples;

/// <summary>A value made on first use and disposed with this object (nothing is disposed when it was never made).</summary>
internal sealed class DisposableLazy<T>(Func<T> factory) : IDisposable where T : class, IDisposable
{
    private T? _value;

    /// <summary>The value, made by the factory on the first call.</summary>
    public T Value => _value ??= factory();

    public void Dispose()
    {
        _value?.Dispose();
        _value = null;
    }
}
