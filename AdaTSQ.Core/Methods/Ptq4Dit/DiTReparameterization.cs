using AdaTSQ.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// PTQ4DiT's offline re-parameterization on a DiT (official parameter names, <see cref="Models.DiT.DiT"/>): the balanced
/// layer's weight columns are multiplied by <c>b</c> (<c>W' = W·B</c>) and the activation side <c>B⁻¹</c> is folded into the
/// operation that produces the layer's input, so the model computes the same function with no extra work at inference.
/// <list type="bullet">
/// <item><c>blocks.N.attn.qkv</c>, <c>blocks.N.mlp.fc1</c>, <c>final_layer.linear</c> read <c>LN(x)·(1 + scale) + shift</c>
/// (adaLN modulation). Dividing it by <c>b</c> is <c>shift' = shift / b</c> and <c>1 + scale' = (1 + scale) / b</c>: the rows
/// of the adaLN linear that produce shift and scale are divided by <c>b</c>, its shift bias too, and its scale bias becomes
/// <c>(bias + 1) / b − 1</c>. Exact (LayerNorm has no affine part in DiT).</item>
/// <item><c>blocks.N.attn.proj</c> reads <c>softmax(QKᵀ/√d)·V</c>, linear in each channel of V, and channel <c>h·d + k</c>
/// of its input is channel <c>h·d + k</c> of V: the value rows of qkv (the last third of its outputs) and their bias are
/// divided by <c>b</c>. Exact.</item>
/// <item><c>blocks.N.mlp.fc2</c> reads <c>GELU(fc1(·))</c>; GELU is not homogeneous, so <c>B⁻¹</c> cannot pass through it:
/// not supported (<see cref="NotSupportedException"/>). The reference code does not balance fc2 either.</item>
/// </list>
/// </summary>
public static class DiTReparameterization
{
    private const string Qkv = ".attn.qkv", Proj = ".attn.proj", Fc1 = ".mlp.fc1", Fc2 = ".mlp.fc2", Final = "final_layer.linear";

    /// <summary>Which kind of balanced layer <paramref name="layerName"/> is (<see cref="BalancedLayers.None"/> when it is none of them).</summary>
    public static BalancedLayers KindOf(string layerName)
    {
        ArgumentNullException.ThrowIfNull(layerName);
        if (layerName.EndsWith(Qkv, StringComparison.Ordinal)) return BalancedLayers.AttentionQkv;
        if (layerName.EndsWith(Proj, StringComparison.Ordinal)) return BalancedLayers.AttentionProj;
        if (layerName.EndsWith(Fc1, StringComparison.Ordinal)) return BalancedLayers.MlpFc1;
        if (layerName == Final || layerName.EndsWith("." + Final, StringComparison.Ordinal)) return BalancedLayers.FinalLinear;
        return BalancedLayers.None;
    }

    /// <summary>Where the <c>B⁻¹</c> of <paramref name="layerName"/> folds: the module and the rows, for reports.</summary>
    /// <exception cref="NotSupportedException">The layer's input cannot take a folded factor (e.g. fc2, behind GELU).</exception>
    public static string FoldTargetOf(string layerName) => Target(layerName).Description;

    /// <summary>
    /// Folds the balancing factors <paramref name="factors"/> (layer name → <c>b</c> <c>[in]</c>, finite and positive) into
    /// <paramref name="model"/> in place and returns what changed (with <see cref="BalancingFold.Undo"/>). The model may hold
    /// plain <c>Linear</c>s or <see cref="QuantLinear"/>s (their float parameters are shared), but no layer the fold touches
    /// may hold a quantized weight version yet. All factors are applied to the parameters as they are now, so compute them
    /// all first (from the unfolded model) and fold them in one call: qkv's columns (its own balancing) and its value rows
    /// (proj's) are scaled independently.
    /// </summary>
    /// <exception cref="NotSupportedException">A layer whose input cannot take a folded factor (fc2 or an unknown layer).</exception>
    /// <exception cref="ArgumentException">A layer or fold target is missing, or a factor has the wrong shape or a non-positive value.</exception>
    /// <exception cref="LayerQuantizationException">A touched layer already holds a quantized weight version.</exception>
    public static BalancingFold Fold(nn.Module model, IReadOnlyDictionary<string, Tensor> factors)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(factors);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var plan = factors.Select(f => (Layer: f.Key, Factors: f.Value, Target: Target(f.Key))).ToList();
        Check(plan, parameters, modules);

        var originals = new Dictionary<string, (Parameter, Tensor)>(StringComparer.Ordinal);
        Parameter Changing(string name)
        {
            var p = parameters[name];
            if (!originals.ContainsKey(name)) originals[name] = (p, p.detach().clone().DetachFromDisposeScope());
            return p;
        }
        var folded = new List<FoldedLayer>();
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var (layer, b, target) in plan)
            {
                using var scope = torch.NewDisposeScope();
                var weight = Changing(layer + ".weight");
                var b64 = b.to(ScalarType.Float64, weight.device);
                weight.copy_((weight.to(ScalarType.Float64) * b64.unsqueeze(0)).to(weight.dtype));
                var inverse = b64.reciprocal();
                var targetWeight = Changing(target.Module + ".weight");
                var targetBias = Changing(target.Module + ".bias");
                long c = b.shape[0];
                if (target.ShiftChunk is { } shift)
                    ScaleRows(targetWeight, targetBias, shift * c, inverse, biasOffset: 0);
                if (target.ScaleChunk is { } scale)
                    ScaleRows(targetWeight, targetBias, scale * c, inverse, biasOffset: 1); // (bias + 1)/b − 1
                if (target.ValueRows)
                    ScaleRows(targetWeight, targetBias, 2 * c, inverse, biasOffset: 0);
                folded.Add(new FoldedLayer(layer, target.Description, b.min().item<float>(), b.max().item<float>()));
            }
        }
        catch
        {
            using (torch.no_grad())
                foreach (var (p, original) in originals.Values) p.copy_(original);
            foreach (var (_, original) in originals.Values) original.Dispose();
            throw;
        }
        return new BalancingFold(originals, folded);
    }

    // Rows [start, start + len) of the target: weight rows times f, bias → (bias + offset)·f − offset.
    private static void ScaleRows(Parameter weight, Parameter bias, long start, Tensor f, double biasOffset)
    {
        long n = f.shape[0];
        var rows = weight.narrow(0, start, n);
        rows.copy_((rows.to(ScalarType.Float64) * f.unsqueeze(1)).to(weight.dtype));
        var b = bias.narrow(0, start, n);
        b.copy_(((b.to(ScalarType.Float64) + biasOffset) * f - biasOffset).to(bias.dtype));
    }

    private sealed record FoldTarget(string Module, string Description, int? ShiftChunk, int? ScaleChunk, int Chunks, bool ValueRows);

    private static FoldTarget Target(string layer)
    {
        string Prefix(string suffix) => layer[..^suffix.Length];
        switch (KindOf(layer))
        {
            case BalancedLayers.AttentionQkv:
                return new FoldTarget(Prefix(Qkv) + ".adaLN_modulation.1", $"{Prefix(Qkv)}.adaLN_modulation.1 (shift_msa, scale_msa)", 0, 1, 6, false);
            case BalancedLayers.MlpFc1:
                return new FoldTarget(Prefix(Fc1) + ".adaLN_modulation.1", $"{Prefix(Fc1)}.adaLN_modulation.1 (shift_mlp, scale_mlp)", 3, 4, 6, false);
            case BalancedLayers.AttentionProj:
                return new FoldTarget(Prefix(Proj) + Qkv, $"{Prefix(Proj)}{Qkv} (value rows)", null, null, 3, true);
            case BalancedLayers.FinalLinear:
                string final = layer[..^"linear".Length] + "adaLN_modulation.1";
                return new FoldTarget(final, $"{final} (shift, scale)", 0, 1, 2, false);
        }
        if (layer.EndsWith(Fc2, StringComparison.Ordinal))
            throw new NotSupportedException($"layer '{layer}': PTQ4DiT's balancing cannot be folded into fc2's input, which comes out of GELU (not homogeneous, so B⁻¹ does not pass through it); balance qkv, proj, fc1 or final_layer.linear.");
        throw new NotSupportedException($"layer '{layer}': not a DiT layer whose input PTQ4DiT can re-parameterize (expected a name ending in {Qkv}, {Proj}, {Fc1} or {Final}).");
    }

    private static void Check(List<(string Layer, Tensor Factors, FoldTarget Target)> plan, Dictionary<string, Parameter> parameters, Dictionary<string, nn.Module> modules)
    {
        var problems = new List<string>();
        foreach (var (layer, b, target) in plan)
        {
            if (!parameters.TryGetValue(layer + ".weight", out var w)) { problems.Add($"layer '{layer}' is not in the model (no parameter {layer}.weight)."); continue; }
            if (b is null || b.Dimensions != 1 || b.shape[0] != w.shape[1]) { problems.Add($"layer '{layer}': factors have shape [{(b is null ? "null" : string.Join(", ", b.shape))}], expected [{w.shape[1]}]."); continue; }
            using (var scope = torch.NewDisposeScope())
                if (!(b.isfinite().all().item<bool>() && (b > 0).all().item<bool>())) problems.Add($"layer '{layer}': factors must be finite and positive.");
            if (!parameters.TryGetValue(target.Module + ".weight", out var tw) || !parameters.ContainsKey(target.Module + ".bias"))
                problems.Add($"layer '{layer}': its fold target {target.Module} (weight and bias) is not in the model.");
            else if (tw.shape[0] != target.Chunks * b.shape[0])
                problems.Add($"layer '{layer}': fold target {target.Module} has {tw.shape[0]} outputs, expected {target.Chunks} × {b.shape[0]}.");
            foreach (var name in new[] { layer, target.Module })
                if (modules.GetValueOrDefault(name) is QuantLinear { WeightVersions.Count: > 0 } q)
                    throw new LayerQuantizationException(q.LayerName, "PTQ4DiT cannot fold its balancing into a layer that already holds quantized weight versions (they were made from the unfolded weight): fold before quantizing.");
        }
        if (problems.Count > 0) throw new ArgumentException("PTQ4DiT re-parameterization: " + string.Join(" ", problems), nameof(plan));
    }
}
