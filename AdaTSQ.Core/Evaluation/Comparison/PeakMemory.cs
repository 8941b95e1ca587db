using System.Diagnostics;

namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// The process's peak resident memory, and (on Linux) a reset of it, so that a peak can be attributed to one cell
/// instead of being the maximum over everything the process did before.
/// </summary>
public static class PeakMemory
{
    /// <summary>
    /// Resets the peak resident size to the current one (Linux: writes "5" to <c>/proc/self/clear_refs</c>).
    /// Returns false where that is not possible; the peak then keeps counting from the process start.
    /// </summary>
    public static bool TryReset()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The peak resident size in bytes since the process started or since the last successful <see cref="TryReset"/>.</summary>
    public static long PeakResidentBytes()
    {
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return self.PeakWorkingSet64;
    }
}
