using System.Runtime.InteropServices;
using AdaTSQ.Kernels.Interop;

namespace AdaTSQ.Kernels;

/// <summary>
/// Weight codes pre-packed once into the kernels' layout, with per-group scales and column sums.
/// Owns aligned native memory; dispose it (the runtime's critical finalizer frees it as a last resort).
/// </summary>
/// <remarks>
/// <para>Layout: panels of 48 output columns; within a panel K runs in steps of 4 and each step
/// holds 48 × 4 bytes (<c>[K/4][48][4]</c>, the operand order of <c>vpdpbusd</c>). 4-bit weights
/// put step 2t in the low nibble and step 2t+1 in the high nibble of the same byte, so one 64-byte
/// load feeds two steps after a shift and a mask. Padding (N to 48, K to 4 or 8) is zero.</para>
/// <para>Codes must lie on the restricted symmetric grid, ±127 (8-bit) or ±7 (4-bit): the AVX2
/// path's sign trick cannot represent −128. Asymmetric (zero-point) weights are not supported.</para>
/// <para>Thread safety: any number of calls may use the same weights at once, and <see cref="Dispose"/>
/// may be called from any thread at any time. The memory sits behind a <see cref="SafeHandle"/> that
/// every call references for its whole length: disposing while calls run lets them finish on intact
/// memory, which is freed when the last of them returns; a call that starts after
/// <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>.</para>
/// </remarks>
public sealed unsafe class PackedWeights : IDisposable
{
    /// <summary>Output columns per packed panel.</summary>
    public const int PanelWidth = 48;

    // One block: codes, then column sums, then scales, each 64-byte aligned. The pointers below are
    // valid while a Lease is held (or, during packing, while the constructor's caller owns the weights).
    private readonly NativeBuffer _memory;
    private readonly byte* _codes;
    private readonly int* _colSum;
    private readonly float* _scale;
    private int _disposed;

    private PackedWeights(int n, int k, int bits, int groupSize, int group, int groups)
    {
        N = n; K = k; Bits = bits; GroupSize = groupSize; Group = group; Groups = groups;
        PaddedN = (n + PanelWidth - 1) / PanelWidth * PanelWidth;
        Steps = (long)groups * group / 4;
        CodeBytes = PaddedN / PanelWidth * Steps * PanelWidth * (bits == 4 ? 2 : 4);
        long tableBytes = (long)groups * PaddedN * sizeof(int);  // column sums; the scales are floats, the same size
        long colSumOffset = Align64(CodeBytes), scaleOffset = colSumOffset + Align64(tableBytes);
        _memory = NativeBuffer.Allocate((nuint)(scaleOffset + tableBytes), 64);  // zeroed
        _codes = _memory.Pointer;
        _colSum = (int*)(_memory.Pointer + colSumOffset);
        _scale = (float*)(_memory.Pointer + scaleOffset);
    }

    private static long Align64(long bytes) => (bytes + 63) & ~63L;

    /// <summary>Output features (rows of the weight).</summary>
    public int N { get; }

    /// <summary>Input features (the reduction dimension).</summary>
    public int K { get; }

    /// <summary>Weight bits: 8, or 4 (codes ±7).</summary>
    public int Bits { get; }

    /// <summary>Group size along K as given (0 = one scale per output channel).</summary>
    public int GroupSize { get; }

    /// <summary>Number of scale groups along K (1 per channel).</summary>
    public int Groups { get; }

    /// <summary>Bytes of packed codes, column sums and scales: the weight memory the kernels read.</summary>
    public long StorageBytes => CodeBytes + (long)Groups * PaddedN * (sizeof(int) + sizeof(float));

    internal int Group { get; }
    internal long PaddedN { get; }
    internal long Steps { get; }
    internal long CodeBytes { get; }

    // The packed memory: read only while a Lease is held (Acquire), which keeps it from being freed.
    internal byte* Codes => _codes;
    internal int* ColSum => _colSum;
    internal float* Scale => _scale;

    /// <summary>The native memory's handle (for tests: released when the weights are disposed and no call holds them).</summary>
    internal NativeBuffer Memory => _memory;

    /// <summary>True once <see cref="Dispose"/> has been called (the memory may still be in use by calls that started before).</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// Test hook: runs on the calling thread right after a call has taken its reference on the memory,
    /// before any kernel code; lets tests dispose the weights (or a tensor argument) while a call holds them.
    /// </summary>
    internal Action? LeaseTakenHook { get; set; }

    /// <summary>
    /// References the native memory for the length of one call: the memory cannot be freed until the
    /// lease is disposed, even if <see cref="Dispose"/> runs meanwhile on another thread.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The weights were disposed before the call
    /// (<see cref="ObjectDisposedException.ObjectName"/> is <c>weights</c>).</exception>
    internal Lease Acquire()
    {
        if (IsDisposed) throw Disposed();
        bool added = false;
        try
        {
            _memory.DangerousAddRef(ref added);  // throws once the memory is freed
        }
        catch (ObjectDisposedException)
        {
            throw Disposed();
        }
        if (!added) throw Disposed();
        try
        {
            // The handle still takes references after Dispose while other calls hold it: a call that
            // got here after Dispose set the flag gives its reference back and fails like a later one.
            if (IsDisposed) throw Disposed();
            LeaseTakenHook?.Invoke();
        }
        catch
        {
            _memory.DangerousRelease();
            throw;
        }
        return new Lease(_memory);
    }

    private static ObjectDisposedException Disposed() =>
        new("weights", "weights: the PackedWeights has been disposed; pack the weights again to use them.");

    /// <summary>A reference on the packed memory for one call; dispose it (once) when the call returns.</summary>
    internal readonly ref struct Lease
    {
        private readonly NativeBuffer _memory;

        internal Lease(NativeBuffer memory) => _memory = memory;

        /// <summary>Releases the reference; frees the memory if the weights were disposed meanwhile and this was the last call.</summary>
        public void Dispose() => _memory.DangerousRelease();
    }

    /// <summary>
    /// Packs int8 codes <c>[n, k]</c> (row-major, in [−127, 127]) with scales <c>[n, groups]</c>
    /// (groups = ceil(k / groupSize), or 1 when <paramref name="groupSize"/> is 0).
    /// </summary>
    /// <exception cref="ArgumentException">Lengths do not match the shape, or a code is −128.</exception>
    /// <exception cref="NotSupportedException">A group size that is not a multiple of 4.</exception>
    public static PackedWeights FromInt8(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, int n, int k, int groupSize = 0)
    {
        var w = Create(n, k, 8, groupSize, codes.Length, (long)n * k, scales.Length);
        try
        {
            for (int row = 0; row < n; row++)
            {
                var src = codes.Slice(row * k, k);
                for (int col = 0; col < k; col++)
                    if (src[col] == sbyte.MinValue)
                        throw new ArgumentException($"weight code −128 at [{row}, {col}]: 8-bit codes must lie in [−127, 127] (restricted symmetric grid).", nameof(codes));
                w.PackRow(row, src, scales.Slice(row * w.Groups, w.Groups));
            }
            return w;
        }
        catch { w.Dispose(); throw; }
    }

    /// <summary>
    /// Packs 4-bit codes stored two per byte (low nibble = even column, as in
    /// <c>QuantizedTensor</c>), <c>[n, ceil(k/2)]</c> bytes of signed codes in [−7, 7], with scales
    /// <c>[n, groups]</c>.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths do not match the shape, or a code is −8.</exception>
    /// <exception cref="NotSupportedException">A group size that is not a multiple of 8.</exception>
    public static PackedWeights FromInt4(ReadOnlySpan<byte> packedCodes, ReadOnlySpan<float> scales, int n, int k, int groupSize = 0)
    {
        int rowBytes = (k + 1) / 2;
        var w = Create(n, k, 4, groupSize, packedCodes.Length, (long)n * rowBytes, scales.Length);
        try
        {
            var row = new sbyte[k];
            for (int r = 0; r < n; r++)
            {
                var src = packedCodes.Slice(r * rowBytes, rowBytes);
                for (int col = 0; col < k; col++)
                {
                    int nibble = (col & 1) == 0 ? src[col >> 1] & 0xF : src[col >> 1] >> 4;
                    int v = nibble >= 8 ? nibble - 16 : nibble;
                    if (v == -8)
                        throw new ArgumentException($"weight code −8 at [{r}, {col}]: 4-bit codes must lie in [−7, 7] (restricted symmetric grid).", nameof(packedCodes));
                    row[col] = (sbyte)v;
                }
                w.PackRow(r, row, scales.Slice(r * w.Groups, w.Groups));
            }
            return w;
        }
        catch { w.Dispose(); throw; }
    }

    private static PackedWeights Create(int n, int k, int bits, int groupSize, long codesLength, long codesExpected, long scalesLength)
    {
        if (n <= 0 || k <= 0) throw new ArgumentOutOfRangeException(n <= 0 ? nameof(n) : nameof(k), $"weight shape [{n}, {k}] must be positive.");
        if (groupSize < 0) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "group size must be 0 (per channel) or positive.");
        int unit = bits == 4 ? 8 : 4;
        if (groupSize > 0 && groupSize % unit != 0)
            throw new NotSupportedException($"{bits}-bit weights with group size {groupSize}: the kernels need a group size that is a multiple of {unit} (or 0 for per-channel scales).");
        int group = groupSize > 0 ? groupSize : (k + unit - 1) / unit * unit;
        int groups = groupSize > 0 ? (k + groupSize - 1) / groupSize : 1;
        if (codesLength != codesExpected) throw new ArgumentException($"weight codes: expected {codesExpected} {(bits == 4 ? "bytes" : "elements")} for [{n}, {k}] at {bits} bits, found {codesLength}.", "codes");
        if (scalesLength != (long)n * groups) throw new ArgumentException($"weight scales: expected n × groups = {n} × {groups} = {(long)n * groups}, found {scalesLength}.", "scales");
        return new PackedWeights(n, k, bits, groupSize, group, groups);
    }

    private void PackRow(int row, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales)
    {
        long panel = row / PanelWidth, c = row % PanelWidth;
        int unitScale = Bits == 4 ? 16 : 1; // 4-bit codes are used as 16·w by the kernels
        long panelBytes = Steps * PanelWidth * (Bits == 4 ? 2 : 4);
        byte* dst = _codes + panel * panelBytes;
        for (int g = 0; g < Groups; g++)
        {
            int sum = 0;
            int end = Math.Min(K, (g + 1) * Group);
            for (int kk = g * Group; kk < end; kk++) sum += codes[kk];
            _colSum[(long)g * PaddedN + row] = sum * unitScale;
            _scale[(long)g * PaddedN + row] = scales[g] / unitScale;
        }
        for (int kk = 0; kk < K; kk++)
        {
            long step = kk / 4, lane = kk % 4;
            if (Bits == 8)
                dst[(step * PanelWidth + c) * 4 + lane] = (byte)codes[kk];
            else
            {
                byte nibble = (byte)(codes[kk] & 0xF);
                dst[((step / 2) * PanelWidth + c) * 4 + lane] |= (step & 1) == 0 ? nibble : (byte)(nibble << 4);
            }
        }
    }

    /// <summary>
    /// Frees the native memory, or, while calls are using it, marks it for freeing when the last of
    /// them returns. Calls started afterwards throw <see cref="ObjectDisposedException"/>. Idempotent
    /// and safe from any thread.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _memory.Dispose();
    }
}
