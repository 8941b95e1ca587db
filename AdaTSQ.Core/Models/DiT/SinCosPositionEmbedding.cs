using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Models.DiT;

/// <summary>
/// The fixed 2-D sine-cosine position embedding of DiT/MAE (<c>get_2d_sincos_pos_embed</c>): for the
/// token at row i, column j of a g×g grid, <c>[E(j), E(i)]</c> with
/// <c>E(p) = [sin(p·ω_k), cos(p·ω_k)]</c>, ω_k = 10000^(−k/(D/4)), k = 0 … D/4−1.
/// (The official code meshes (w, h), so the first half encodes the column.)
/// </summary>
public static class SinCosPositionEmbedding
{
    /// <summary>The embedding <c>[g·g, dim]</c> in float32, computed in float64 as the official numpy code does.</summary>
    public static Tensor Create(int dim, int gridSize)
    {
        if (dim % 4 != 0) throw new ArgumentException($"embedding width {dim} must be a multiple of 4.", nameof(dim));
        int quarter = dim / 4;
        var result = new float[gridSize * gridSize * dim];
        for (int i = 0; i < gridSize; i++)
            for (int j = 0; j < gridSize; j++)
            {
                int row = (i * gridSize + j) * dim;
                Fill(result, row, j, quarter);
                Fill(result, row + 2 * quarter, i, quarter);
            }
        return torch.tensor(result, [gridSize * gridSize, dim]);
    }

    private static void Fill(float[] target, int offset, int position, int quarter)
    {
        for (int k = 0; k < quarter; k++)
        {
            double omega = 1.0 / Math.Pow(10000, (double)k / quarter);
            target[offset + k] = (float)Math.Sin(position * omega);
            target[offset + quarter + k] = (float)Math.Cos(position * omega);
        }
    }
}
