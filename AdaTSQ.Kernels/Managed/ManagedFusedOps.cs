using AdaTSQ.Abstractions;
using AdaTSQ.Kernels.Interop;

namespace AdaTSQ.Kernels.Managed;

/// <summary>The fused prologue / epilogue of <see cref="FusedLinearOps"/> in plain C# (the managed path; same formulas as native/src/fused_ops.inc).</summary>
internal static unsafe class ManagedFusedOps
{
    public static void LayerNormModulate(float* x, long m, long k, LinearOps* ops, float* y)
    {
        for (long i = 0; i < m; i++)
        {
            float* row = x + i * k, outRow = y + i * k;
            long sample = i / ops->RowsPerSample;
            // Moments in double: the float result is then the correctly rounded one, as close to
            // torch's (pairwise float) LayerNorm as a fallback needs to be.
            double sum = 0;
            for (long j = 0; j < k; j++) sum += row[j];
            double meanD = sum / k, sq = 0;
            for (long j = 0; j < k; j++) { double d = row[j] - meanD; sq += d * d; }
            float mean = (float)meanD;
            float rstd = (float)(1.0 / Math.Sqrt(sq / k + ops->Eps));
            float* shift = ops->Shift is null ? null : ops->Shift + sample * ops->LdMod;
            float* scale = ops->Scale is null ? null : ops->Scale + sample * ops->LdMod;
            for (long j = 0; j < k; j++)
            {
                float v = (row[j] - mean) * rstd;
                if (scale is not null) v *= 1f + scale[j];
                if (shift is not null) v += shift[j];
                outRow[j] = v;
            }
        }
    }

    /// <summary>The whole prologue of ops into y: LayerNorm + modulate, the input scale, the rotation (each when set; x may be y).</summary>
    public static void Prologue(float* x, long m, long k, LinearOps* ops, float* y)
    {
        float* src = x;
        if (ops->LayerNorm != 0) { LayerNormModulate(x, m, k, ops, y); src = y; }
        if (ops->InputScale is not null) { ScaleInput(src, m, k, ops->InputScale, y); src = y; }
        if (ops->RotBlock > 0)
        {
            if (src != y) Buffer.MemoryCopy(src, y, m * k * sizeof(float), m * k * sizeof(float));
            Rotate(y, m, k, ops);
        }
    }

    /// <summary>The rotation of ops on each row of x, in place (the same operations, in the same order, as native/src/fused_ops.inc).</summary>
    public static void Rotate(float* x, long m, long k, LinearOps* ops)
    {
        long b = ops->RotBlock, order = ops->RotOrder;
        var tmp = order > 1 ? new float[k] : null;
        for (long r = 0; r < m; r++)
        {
            float* row = x + r * k;
            if (ops->RotSigns is not null)
                for (long i = 0; i < k; i++) row[i] *= ops->RotSigns[i];
            for (long s0 = 0; s0 < k; s0 += b)
                for (long h = 1; h < b; h *= 2)
                    for (long i = 0; i < b; i += 2 * h)
                        for (long j = 0; j < h; j++)
                        {
                            float a = row[s0 + i + j], c = row[s0 + i + j + h];
                            row[s0 + i + j] = a + c;
                            row[s0 + i + j + h] = a - c;
                        }
            if (order > 1)
            {
                for (long i = 0; i < order; i++)
                {
                    float* hrow = ops->RotHm + i * order;
                    for (long c = 0; c < b; c++)
                    {
                        float v = hrow[0] * row[c];
                        for (long j = 1; j < order; j++) v += hrow[j] * row[j * b + c];
                        tmp![i * b + c] = v;
                    }
                }
                for (long i = 0; i < k; i++) row[i] = tmp![i];
            }
            float d = ops->RotDivisor;
            for (long i = 0; i < k; i++) row[i] /= d;
        }
    }

    /// <summary>y[i, j] = x[i, j] · s[j] (in place when y == x): the input scale of the prologue.</summary>
    public static void ScaleInput(float* x, long m, long k, float* s, float* y)
    {
        for (long i = 0; i < m; i++)
        {
            float* row = x + i * k, outRow = y + i * k;
            for (long j = 0; j < k; j++) outRow[j] = row[j] * s[j];
        }
    }

    /// <summary>t[i, j] = x[i, :] · down[j, :] for the low-rank branch (rank ops->Rank), summed in double then rounded.</summary>
    public static void LowRankDown(float* x, long m, long k, LinearOps* ops, float* t)
    {
        long rank = ops->Rank;
        for (long i = 0; i < m; i++)
            for (long j = 0; j < rank; j++)
            {
                float* row = x + i * k, d = ops->LowRankDown + j * ops->LdDown;
                double sum = 0;
                for (long c = 0; c < k; c++) sum += (double)row[c] * d[c];
                t[i * rank + j] = (float)sum;
            }
    }

    /// <summary>y[i, c] += Σ_j t[i, j] · up[c, j]: the low-rank branch added after the bias, before the activation.</summary>
    public static void LowRankUp(float* y, long m, long n, LinearOps* ops, float* t)
    {
        long rank = ops->Rank;
        for (long i = 0; i < m; i++)
            for (long c = 0; c < n; c++)
            {
                float* u = ops->LowRankUp + c * ops->LdUp, ti = t + i * rank;
                double sum = 0;
                for (long j = 0; j < rank; j++) sum += (double)ti[j] * u[j];
                y[i * n + c] += (float)sum;
            }
    }

    public static void Epilogue(float* y, long m, long n, LinearOps* ops)
    {
        for (long i = 0; i < m; i++)
        {
            float* row = y + i * n;
            if (ops->Activation == (int)FusedActivation.GeluTanh)
                for (long j = 0; j < n; j++)
                {
                    float v = row[j];
                    float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
                    row[j] = v / (1f + MathF.Exp(-2f * u));
                }
            if (ops->Residual is null) continue;
            float* res = ops->Residual + i * ops->LdResidual;
            float* gate = ops->Gate is null ? null : ops->Gate + i / ops->RowsPerSample * ops->LdGate;
            for (long j = 0; j < n; j++) row[j] = res[j] + (gate is null ? 1f : gate[j]) * row[j];
        }
    }
}
