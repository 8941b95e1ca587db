using AdaTSQ.Abstractions;

namespace AdaTSQ.Samples;

/// <summary>A one-line progress bar on standard error (so standard output stays a clean table).</summary>
internal sealed class ConsoleProgressBar : IProgress<QuantizationProgress>
{
    private const int Width = 30;
    private readonly string _label;

    public ConsoleProgressBar(string label) => _label = label;

    public void Report(QuantizationProgress value)
    {
        bool done = value.Completed >= value.Total;
        if (Console.IsErrorRedirected)
        {
            // Not a terminal (CI logs, pipes): one line per finished stage instead of a redrawn bar.
            if (done) Console.Error.WriteLine($"{_label,-8} {value.Stage,-10} done ({value.Total})");
            return;
        }
        int filled = (int)Math.Round(value.Fraction * Width);
        string bar = new string('#', filled) + new string('.', Width - filled);
        string line = $"\r{_label,-8} {value.Stage,-10} [{bar}] {value.Completed,4}/{value.Total,-4} {value.Item ?? ""}";
        Console.Error.Write(line.Length > 100 ? line[..100] : line.PadRight(100));
        if (done) Console.Error.WriteLine();
    }
}
