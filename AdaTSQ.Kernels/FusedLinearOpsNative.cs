using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Kernels;

/// <summary>
/// The kernel boundary of <see cref="FusedLinearOps"/>: the checks of its tensors against one integer
/// call and its conversion to the native struct. They were members of <see cref="FusedLinearOps"/>; they
/// live here so that the description (namespace <c>AdaTSQ.Abstractions</c>, which model code imports)
/// does not depend on the kernels' internals.
/// </summary>
internal static class FusedLinearOpsNative
{
    /// <summary>Checks the tensors against a call with <paramref name="m"/> rows, <paramref name="k"/> inputs, <paramref name="n"/> outputs; returns the rows per sample.</summary>
    internal static long Validate(this FusedLinearOps ops, long m, long k, long n, long[] outputShape, string what)
    {
        if (!(ops.LayerNormEpsilon > 0) || !double.IsFinite(ops.LayerNormEpsilon))
            throw new ArgumentException($"{what}: LayerNormEpsilon must be a positive finite number, got {ops.LayerNormEpsilon}.", nameof(FusedLinearOps.LayerNormEpsilon));
        if ((ops.Shift is not null || ops.Scale is not null) && !ops.LayerNorm)
            throw new ArgumentException($"{what}: Shift / Scale modulate the LayerNorm output; set LayerNorm = true.", nameof(FusedLinearOps.LayerNorm));
        if (ops.Gate is not null && ops.Residual is null)
            throw new ArgumentException($"{what}: Gate multiplies the output before the Residual is added; set Residual too.", nameof(FusedLinearOps.Gate));
        if (!Enum.IsDefined(ops.Activation)) throw new ArgumentException($"{what}: unknown activation {(int)ops.Activation}.", nameof(FusedLinearOps.Activation));
        long samples = 0;
        void PerSample(Tensor? t, long width, string name)
        {
            if (t is null) return;
            TorchIntegerGemm.CheckCpuContiguous(t, name, ScalarType.Float32);
            if (t.Dimensions != 2 || t.shape[1] != width)
                throw new ArgumentException($"{what}: {name} has shape [{string.Join(", ", t.shape)}], expected [samples, {width}].", name);
            if (samples != 0 && t.shape[0] != samples)
                throw new ArgumentException($"{what}: {name} has {t.shape[0]} samples, the other per-sample tensors {samples}.", name);
            samples = t.shape[0];
            if (samples == 0 || m % samples != 0)
                throw new ArgumentException($"{what}: {name} has {samples} samples, which do not divide the call's {m} rows evenly.", name);
        }
        PerSample(ops.Shift, k, nameof(FusedLinearOps.Shift));
        PerSample(ops.Scale, k, nameof(FusedLinearOps.Scale));
        PerSample(ops.Gate, n, nameof(FusedLinearOps.Gate));
        if (ops.Residual is not null)
        {
            TorchIntegerGemm.CheckCpuContiguous(ops.Residual, nameof(FusedLinearOps.Residual), ScalarType.Float32);
            if (!ops.Residual.shape.SequenceEqual(outputShape))
                throw new ArgumentException($"{what}: Residual has shape [{string.Join(", ", ops.Residual.shape)}], expected the output's [{string.Join(", ", outputShape)}].", nameof(FusedLinearOps.Residual));
        }
        return samples == 0 ? m : m / samples;
    }

    /// <summary>
    /// Holds <paramref name="ops"/>' and <paramref name="transforms"/>' tensors for one native call (see
    /// <see cref="Interop.PinnedTensor"/>); nothing for null. Dispose the result after the call.
    /// </summary>
    /// <exception cref="ObjectDisposedException">A tensor has been disposed (named by its property).</exception>
    internal static Pinned Pin(FusedLinearOps? ops, LinearTransforms? transforms = null)
    {
        if (ops is null && transforms is null) return default;
        var held = new Interop.PinnedTensor[9];
        try
        {
            held[0] = Interop.PinnedTensor.Take(ops?.Shift, nameof(FusedLinearOps.Shift));
            held[1] = Interop.PinnedTensor.Take(ops?.Scale, nameof(FusedLinearOps.Scale));
            held[2] = Interop.PinnedTensor.Take(ops?.Residual, nameof(FusedLinearOps.Residual));
            held[3] = Interop.PinnedTensor.Take(ops?.Gate, nameof(FusedLinearOps.Gate));
            held[4] = Interop.PinnedTensor.Take(transforms?.InputScale, nameof(LinearTransforms.InputScale));
            held[5] = Interop.PinnedTensor.Take(transforms?.LowRankDown, nameof(LinearTransforms.LowRankDown));
            held[6] = Interop.PinnedTensor.Take(transforms?.LowRankUp, nameof(LinearTransforms.LowRankUp));
            held[7] = Interop.PinnedTensor.Take(transforms?.Rotation?.Signs, "Rotation.Signs");
            held[8] = Interop.PinnedTensor.Take(transforms?.Rotation?.Dense, "Rotation.Dense");
            return new Pinned(ops, transforms, held);
        }
        catch
        {
            foreach (var h in held) h.Dispose();
            throw;
        }
    }

    /// <summary>The tensors of one <see cref="FusedLinearOps"/> (and <see cref="LinearTransforms"/>) held for a native call, and the native struct that points into them.</summary>
    internal readonly struct Pinned(FusedLinearOps? ops, LinearTransforms? transforms, Interop.PinnedTensor[]? held) : IDisposable
    {
        /// <summary>True when there is a native struct to pass (ops or transforms given).</summary>
        public bool Any => ops is not null || transforms is not null;

        /// <summary>The native struct (all zero without ops and transforms); valid until this is disposed.</summary>
        public unsafe Interop.LinearOps ToNative(long rowsPerSample, long k, long n)
        {
            if (held is null) return default;
            long rank = transforms?.LowRankDown is null ? 0 : transforms.Rank;
            return new()
            {
                LayerNorm = ops?.LayerNorm == true ? 1 : 0,
                Eps = (float)(ops?.LayerNormEpsilon ?? 1e-6),
                Shift = (float*)held[0].Address,
                Scale = (float*)held[1].Address,
                LdMod = k,
                RowsPerSample = rowsPerSample,
                Activation = (int)(ops?.Activation ?? FusedActivation.None),
                Residual = (float*)held[2].Address,
                LdResidual = n,
                Gate = (float*)held[3].Address,
                LdGate = n,
                InputScale = (float*)held[4].Address,
                Rank = rank,
                LowRankDown = (float*)held[5].Address,
                LdDown = k,
                LowRankUp = (float*)held[6].Address,
                LdUp = rank,
                RotBlock = transforms?.Rotation?.Block ?? 0,
                RotOrder = transforms?.Rotation is { } r ? (r.Dense is null ? 1 : k / r.Block) : 0,
                RotHm = (float*)held[8].Address,
                RotSigns = (float*)held[7].Address,
                RotDivisor = (float)(transforms?.Rotation?.Divisor ?? 0),
            };
        }

        /// <summary>Releases the tensors.</summary>
        public void Dispose()
        {
            if (held is null) return;
            foreach (var h in held) h.Dispose();
        }
    }
}
