using System.Runtime.InteropServices;

namespace AdaTSQ.Kernels.Interop;

/// <summary>
/// A block of zeroed, aligned native memory (<see cref="NativeMemory.AlignedAlloc"/>) owned by a
/// <see cref="SafeHandle"/>, so that it is reference-counted: <see cref="SafeHandle.Dispose()"/> drops
/// the owner's reference, and <see cref="ReleaseHandle"/> frees the memory when the last reference
/// taken with <see cref="SafeHandle.DangerousAddRef"/> is released (at once when none is held). The
/// runtime's critical finalizer frees a buffer nobody disposed.
/// </summary>
/// <remarks>
/// <see cref="SafeHandle.DangerousAddRef"/> fails (<see cref="ObjectDisposedException"/>) only once the
/// handle is closed, i.e. freed; after <see cref="SafeHandle.Dispose()"/> with references still held it
/// succeeds. An owner that must refuse new users from the moment it is disposed keeps its own flag
/// (as <see cref="PackedWeights"/> does).
/// </remarks>
internal sealed unsafe class NativeBuffer : SafeHandle
{
    private int _released;

    private NativeBuffer() : base(0, ownsHandle: true) { }

    /// <summary>Bytes in the block.</summary>
    public nuint Length { get; private set; }

    /// <summary>True once <see cref="ReleaseHandle"/> has freed the memory (for tests).</summary>
    public bool IsReleased => Volatile.Read(ref _released) != 0;

    /// <inheritdoc />
    public override bool IsInvalid => handle == 0;

    /// <summary>The first byte; valid only while the caller holds a reference (or owns the buffer and has not disposed it).</summary>
    public byte* Pointer => (byte*)handle;

    /// <summary>Allocates <paramref name="bytes"/> zeroed bytes aligned to <paramref name="alignment"/>.</summary>
    /// <exception cref="OutOfMemoryException">The allocation failed.</exception>
    public static NativeBuffer Allocate(nuint bytes, nuint alignment)
    {
        var buffer = new NativeBuffer();  // first, so that no allocated block is ever without an owner
        void* p = NativeMemory.AlignedAlloc(bytes, alignment);
        NativeMemory.Clear(p, bytes);
        buffer.SetHandle((nint)p);
        buffer.Length = bytes;
        return buffer;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        Volatile.Write(ref _released, 1);
        return true;
    }
}
