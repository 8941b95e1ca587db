using static TorchSharp.torch;

namespace AdaTSQ.Kernels.Interop;

/// <summary>
/// A caller's tensor held for the length of one native call: a private alias (a second libtorch
/// tensor on the same storage, TorchSharp's public <c>alias()</c>) keeps the storage alive even if
/// the caller disposes its tensor on another thread while the call runs, and <see cref="Address"/> is
/// read from the alias. Dispose it after the call (a <c>using</c> declaration): that is also the use
/// that keeps the alias from being finalized mid-call.
/// </summary>
/// <remarks>
/// Checks run on the caller's tensor first (<see cref="TensorMemory.ThrowIfDisposed"/>), so a tensor
/// disposed before the call gives an <see cref="ObjectDisposedException"/> naming the argument. A
/// dispose that races with the alias being taken is caught the same way; one that comes later no
/// longer matters to the call.
/// </remarks>
internal readonly struct PinnedTensor : IDisposable
{
    private readonly Tensor? _alias;

    private PinnedTensor(Tensor alias, nint address)
    {
        _alias = alias;
        Address = address;
    }

    /// <summary>The address of the first element (a device pointer for a CUDA tensor); 0 for none or an empty tensor.</summary>
    public nint Address { get; }

    /// <summary>Holds <paramref name="tensor"/> (nothing when it is null) for one native call.</summary>
    /// <param name="tensor">A dense tensor, already checked for device, dtype and contiguity.</param>
    /// <param name="name">The argument's name, for the exception.</param>
    /// <exception cref="ObjectDisposedException">The tensor has been disposed (<see cref="ObjectDisposedException.ObjectName"/> is <paramref name="name"/>).</exception>
    public static PinnedTensor Take(Tensor? tensor, string name)
    {
        if (tensor is null) return default;
        TensorMemory.ThrowIfDisposed(tensor, name);
        Tensor alias;
        try
        {
            alias = tensor.alias();
        }
        catch (InvalidOperationException) when (tensor.IsInvalid)
        {
            throw TensorMemory.Disposed(name);
        }
        try
        {
            return new PinnedTensor(alias, TensorMemory.Address(alias));
        }
        catch
        {
            alias.Dispose();
            throw;
        }
    }

    /// <summary>Releases the alias (the storage is freed here if the caller disposed its tensor meanwhile).</summary>
    public void Dispose() => _alias?.Dispose();
}
