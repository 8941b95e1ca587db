using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Samples.Evaluation;

/// <summary>Writes rows of grey images in [−1, 1] <c>[N, 1, H, W]</c> as one PNG grid (one row per setting).</summary>
internal static class ImageGrid
{
    public static void Save(string path, IReadOnlyList<Tensor> rows, int columns, int scale = 2, int gap = 2)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows to draw.", nameof(rows));
        int h = (int)rows[0].shape[2], w = (int)rows[0].shape[3];
        int width = columns * (w * scale + gap) + gap, height = rows.Count * (h * scale + gap) + gap;
        using var image = new Image<L8>(width, height, new L8(255));
        for (int r = 0; r < rows.Count; r++)
        {
            using var bytes = ((rows[r][..columns].clamp(-1, 1) + 1) * 127.5).round().to(ScalarType.Byte).cpu().contiguous();
            var data = bytes.data<byte>().ToArray();
            for (int c = 0; c < columns; c++)
                for (int y = 0; y < h * scale; y++)
                    for (int x = 0; x < w * scale; x++)
                        image[gap + c * (w * scale + gap) + x, gap + r * (h * scale + gap) + y] = new L8(data[c * h * w + (y / scale) * w + x / scale]);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        image.SaveAsPng(path);
    }
}
