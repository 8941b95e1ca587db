using System.Runtime.InteropServices;

namespace AdaTSQ.Interop;

/// <summary>
/// Gives freed native memory back to the operating system between the stages of long loops. libtorch's CPU
/// tensors come from glibc's malloc, which keeps freed blocks of up to 32 MB in its heaps (its mmap
/// threshold rises as large blocks are freed); a loop whose allocation pattern shifts (a search that keeps
/// a few small tensors alive between model calls) then grows the resident memory by gigabytes although
/// every tensor is disposed. <c>malloc_trim(0)</c> returns the free pages; it costs milliseconds.
/// </summary>
internal static partial class NativeMemory
{
    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>Returns free heap pages to the system (glibc on Linux; does nothing elsewhere).</summary>
    public static void Trim()
    {
        if (_unavailable) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            _unavailable = true;    // not glibc (e.g. musl): nothing to trim
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
