using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Finds the linear layers of any TorchSharp module tree and swaps them for <see cref="QuantLinear"/>
/// (and back). Every swap is checked before any is made, so a model is never left half-converted.
/// </summary>
/// <remarks>
/// TorchSharp modules call their children through C# fields, so a swap must replace the field, not
/// only the registered child. Supported places: fields (of any visibility) whose declared type can
/// hold a <see cref="QuantLinear"/> (e.g. <c>Module&lt;Tensor, Tensor&gt;</c>; a field declared as the
/// sealed <c>Linear</c> cannot and is reported), <c>ModuleList&lt;T&gt;</c> and <c>ModuleDict&lt;T&gt;</c>
/// with such a <c>T</c>, and <c>Sequential</c>.
/// </remarks>
public static class ModelSurgery
{
    /// <summary>Every linear layer of <paramref name="model"/>, by dotted name, in model order.</summary>
    public static IReadOnlyList<(string Name, Linear Layer)> FindLinears(nn.Module model) =>
        model.named_modules().Where(m => m.module is Linear).Select(m => (m.name, (Linear)m.module)).ToList();

    /// <summary>Every <see cref="QuantLinear"/> of <paramref name="model"/>, in model order.</summary>
    public static IReadOnlyList<QuantLinear> FindQuantLinears(nn.Module model) =>
        model.named_modules().Select(m => m.module).OfType<QuantLinear>().ToList();

    /// <summary>
    /// Replaces each linear layer chosen by <paramref name="selector"/> (all when null) by a
    /// <see cref="QuantLinear"/> in full precision, so the model computes exactly what it did.
    /// </summary>
    /// <exception cref="ModelSurgeryException">A chosen layer cannot be swapped (nothing is changed then).</exception>
    public static SurgeryReport ReplaceLinears(nn.Module model, LayerSelector? selector = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        selector ??= LayerSelector.All;
        if (model is Linear) throw new ModelSurgeryException("the model itself is a Linear layer: wrap it in a container module first.");
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var plans = new List<(Slot Slot, Linear Layer, string Name)>();
        var skipped = new List<string>();
        foreach (var (name, layer) in FindLinears(model))
        {
            if (!selector.Matches(name)) { skipped.Add(name); continue; }
            plans.Add((FindSlot(model, modules, name, layer, typeof(QuantLinear)), layer, name));
        }
        var replaced = new List<ReplacedLayer>();
        foreach (var (slot, layer, name) in plans)
        {
            slot.Set(new QuantLinear(name, layer));
            replaced.Add(new ReplacedLayer(name, layer.in_features, layer.out_features, layer.bias is not null));
        }
        return new SurgeryReport(replaced, skipped);
    }

    /// <summary>Puts the original linear layers back in place of every <see cref="QuantLinear"/>; returns how many.</summary>
    public static int Restore(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var plans = modules.Where(m => m.Value is QuantLinear)
            .Select(m => (Slot: FindSlot(model, modules, m.Key, m.Value, typeof(Linear)), Layer: (QuantLinear)m.Value))
            .ToList();
        foreach (var (slot, layer) in plans)
        {
            slot.Set(layer.Unwrap());
            layer.Dispose();
        }
        return plans.Count;
    }

    private sealed class Slot(Action<nn.Module> set)
    {
        public void Set(nn.Module replacement) => set(replacement);
    }

    private static Slot FindSlot(nn.Module root, Dictionary<string, nn.Module> modules, string name, nn.Module child, Type replacementType)
    {
        int dot = name.LastIndexOf('.');
        string parentName = dot < 0 ? "" : name[..dot];
        string key = dot < 0 ? name : name[(dot + 1)..];
        var parent = parentName.Length == 0 ? root : modules[parentName];
        string where = $"'{name}' (child '{key}' of {parent.GetType().Name}{(parentName.Length == 0 ? " (the model)" : $" '{parentName}'")})";
        var registry = SubmoduleRegistry(parent);
        Action<nn.Module> register = m => { if (registry is not null && registry.ContainsKey(key)) registry[key] = m; };

        var type = parent.GetType();
        if (type.IsGenericType && (type.GetGenericTypeDefinition() == typeof(ModuleList<>) || type.GetGenericTypeDefinition() == typeof(ModuleDict<>)))
        {
            var elementType = type.GetGenericArguments()[0];
            if (!elementType.IsAssignableFrom(replacementType))
                throw new ModelSurgeryException($"cannot replace {where}: the container holds {elementType.Name}, which a {replacementType.Name} is not; declare it as ModuleList<Module<Tensor, Tensor>>.");
            bool isList = type.GetGenericTypeDefinition() == typeof(ModuleList<>);
            var indexer = type.GetProperties().Single(p => p.GetIndexParameters() is [var ip] && ip.ParameterType == (isList ? typeof(int) : typeof(string)));
            object index = isList ? int.Parse(key, System.Globalization.CultureInfo.InvariantCulture) : key;
            return new Slot(m => { indexer.SetValue(parent, m, [index]); register(m); });
        }
        if (parent is Sequential)
        {
            var listField = typeof(Sequential).GetField("_modules", BindingFlags.Instance | BindingFlags.NonPublic)
                ?? throw new ModelSurgeryException($"cannot replace {where}: this TorchSharp version's Sequential has no '_modules' list.");
            var list = (System.Collections.IList)listField.GetValue(parent)!;
            int i = list.IndexOf(child);
            if (i < 0) throw new ModelSurgeryException($"cannot replace {where}: it is not in the Sequential's module list.");
            return new Slot(m => { list[i] = m; register(m); });
        }
        var fields = AllInstanceFields(type).Where(f => ReferenceEquals(f.GetValue(parent), child)).ToList();
        if (fields.Count == 0)
            throw new ModelSurgeryException($"cannot replace {where}: no field of {type.Name} refers to it, so its forward() could not be redirected.");
        var wrong = fields.Where(f => !f.FieldType.IsAssignableFrom(replacementType)).ToList();
        if (wrong.Count > 0)
            throw new ModelSurgeryException($"cannot replace {where}: field '{wrong[0].Name}' is declared {wrong[0].FieldType.Name}, which cannot hold a {replacementType.Name}; declare it as Module<Tensor, Tensor>.");
        return new Slot(m => { foreach (var f in fields) f.SetValue(parent, m); register(m); });
    }

    private static IEnumerable<FieldInfo> AllInstanceFields(Type? type)
    {
        for (; type is not null && type != typeof(object); type = type.BaseType)
            foreach (var f in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                if (typeof(nn.Module).IsAssignableFrom(f.FieldType) || f.FieldType.IsAssignableFrom(typeof(nn.Module)))
                    yield return f;
    }

    private static TorchSharp.Utils.OrderedDict<string, nn.Module>? SubmoduleRegistry(nn.Module parent) =>
        typeof(nn.Module).GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic)?.GetValue(parent)
            as TorchSharp.Utils.OrderedDict<string, nn.Module>;
}
