using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels.Interop;

/// <summary>
/// Data addresses of TorchSharp tensors through TorchSharp's public API only (no P/Invoke into
/// LibTorchSharp): <see cref="torch.Storage.data_ptr"/> (public since TorchSharp 0.107) plus
/// <see cref="Tensor.storage_offset"/> × <see cref="Tensor.ElementSize"/>, which is libtorch's own
/// <c>Tensor::data_ptr()</c>. The same code serves CPU tensors and CUDA tensors (a device pointer).
/// </summary>
internal static class TensorMemory
{
    /// <summary>
    /// The address of <paramref name="t"/>'s first element, 0 for an empty tensor. The caller keeps
    /// <paramref name="t"/> alive (and undisposed) while the address is used: see <see cref="PinnedTensor"/>.
    /// </summary>
    public static nint Address(Tensor t)
    {
        if (t.numel() == 0) return 0;
        return new StorageOf(t).data_ptr() + (nint)(t.storage_offset() * t.ElementSize);
    }

    /// <summary>Throws the typed exception for a disposed tensor argument.</summary>
    /// <exception cref="ObjectDisposedException"><paramref name="t"/> has been disposed.</exception>
    public static void ThrowIfDisposed(Tensor t, string name)
    {
        if (t.IsInvalid) throw Disposed(name);
    }

    /// <summary>The exception for a disposed tensor argument; <see cref="ObjectDisposedException.ObjectName"/> is the argument's name.</summary>
    public static ObjectDisposedException Disposed(string name) =>
        new(name, $"{name}: the tensor has been disposed; the integer kernels cannot read it.");

    // The storage under a tensor of any dtype. tensor.storage<T>() would first convert the tensor to
    // T's dtype (a copy for int8, which has no Storage<sbyte>), so this derives from the public
    // abstract Storage directly: its protected constructor reads the storage pointer of the tensor
    // as given, and data_ptr() returns it.
    private sealed class StorageOf(Tensor tensor) : torch.Storage(tensor)
    {
        public override int element_size() => (int)_tensor.ElementSize;
    }
}
