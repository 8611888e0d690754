using Ftransformers.Serving;
using Mono.Cecil;
using Mono.Cecil.Cil;
using NUnit.Framework;

namespace Ftransformers.Tests;

/// <summary>
/// The core library's namespaces form layers, and a lower one never references a higher one: read from the compiled
/// assembly (signatures, fields, attributes and method bodies), so no reference escapes.
/// </summary>
[TestFixture]
public class LayeringTests
{
    // Bottom to top. AddFtransformers lives in Microsoft.Extensions.DependencyInjection by convention: it is hosting.
    private static readonly string[] Layers =
    [
        "Ftransformers.Threading",
        "Ftransformers.Kernels",
        "Ftransformers.Memory",
        "Ftransformers.Quantization",
        "Ftransformers.Formats",
        "Ftransformers.Tokenization",
        "Ftransformers.Model",
        "Ftransformers.Backends",
        "Ftransformers.Backends.Cpu",
        "Ftransformers.Inference",
        "Ftransformers.Diagnostics",
        "Ftransformers.Verification",
        "Ftransformers.Generation",
        "Ftransformers.Generation.Grammar",
        "Ftransformers.Serving",
        "Ftransformers.Hosting",
    ];

    [Test]
    public void NoNamespaceReferencesAHigherOne()
    {
        string path = typeof(InferenceSession).Assembly.Location;
        using AssemblyDefinition assembly = AssemblyDefinition.ReadAssembly(path);
        ModuleDefinition module = assembly.MainModule;
        var violations = new SortedSet<string>(StringComparer.Ordinal);
        var unplaced = new SortedSet<string>(StringComparer.Ordinal);
        foreach (TypeDefinition type in module.GetTypes())
        {
            string? from = LayerOf(type);
            if (from == null)
            {
                if (!type.Name.StartsWith('<') && Namespace(type) != "" && !Namespace(type).StartsWith("System.", StringComparison.Ordinal))
                    unplaced.Add(type.FullName);
                continue;
            }
            foreach (TypeReference used in References(type))
            {
                if (used.Scope != module && used.Module != module)
                    continue;
                string? to = LayerOf(used);
                if (to != null && Array.IndexOf(Layers, to) > Array.IndexOf(Layers, from))
                    violations.Add($"{from} -> {to}: {Outermost(type).FullName} uses {Outermost(used).FullName}");
            }
        }
        Assert.That(unplaced, Is.Empty, "namespaces without a layer");
        Assert.That(violations, Is.Empty, "a lower namespace references a higher one");
    }

    // Constants are copied into the code that uses them, so the compiled assembly does not show them; the sources'
    // using directives do.
    [Test]
    public void NoSourceFileImportsAHigherNamespace()
    {
        string core = Path.Combine(Fixtures.RepositoryRoot, "src", "Ftransformers.Core");
        var violations = new List<string>();
        foreach (string file in Directory.EnumerateFiles(core, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(core, file);
            if (relative.StartsWith("obj", StringComparison.Ordinal) || relative.StartsWith("bin", StringComparison.Ordinal))
                continue;
            string[] lines = File.ReadAllLines(file);
            string? own = lines.Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("namespace ", StringComparison.Ordinal))?["namespace ".Length..].TrimEnd(';');
            int from = own == "Microsoft.Extensions.DependencyInjection" ? Layers.Length - 1 : Array.IndexOf(Layers, own);
            Assert.That(from, Is.GreaterThanOrEqualTo(0), $"{relative}: namespace {own} has no layer");
            foreach (string line in lines.Where(l => l.StartsWith("using Ftransformers.", StringComparison.Ordinal)))
            {
                string imported = line["using ".Length..].TrimEnd(';');
                if (Array.IndexOf(Layers, imported) > from)
                    violations.Add($"{relative}: {own} imports {imported}");
            }
        }
        Assert.That(violations, Is.Empty);
    }

    private static TypeReference Outermost(TypeReference type)
    {
        while (type.DeclaringType != null)
            type = type.DeclaringType;
        return type;
    }

    private static string Namespace(TypeReference type) => Outermost(type).Namespace;

    private static string? LayerOf(TypeReference type)
    {
        string ns = Namespace(type);
        if (ns == "Microsoft.Extensions.DependencyInjection")
            return "Ftransformers.Hosting";
        return Layers.Contains(ns) ? ns : null;
    }

    // Every type a type's members mention, element and generic argument types included.
    private static IEnumerable<TypeReference> References(TypeDefinition type)
    {
        var found = new List<TypeReference>();
        void Add(TypeReference? t)
        {
            switch (t)
            {
                case null:
                    return;
                case GenericInstanceType generic:
                    Add(generic.ElementType);
                    foreach (TypeReference argument in generic.GenericArguments)
                        Add(argument);
                    return;
                case TypeSpecification spec:
                    Add(spec.ElementType);
                    return;
                case GenericParameter:
                    return;
                default:
                    found.Add(t);
                    return;
            }
        }
        void AddMethod(MethodReference m)
        {
            Add(m.DeclaringType);
            Add(m.ReturnType);
            foreach (ParameterDefinition p in m.Parameters)
                Add(p.ParameterType);
            if (m is GenericInstanceMethod g)
                foreach (TypeReference argument in g.GenericArguments)
                    Add(argument);
        }
        void AddAttributes(ICustomAttributeProvider provider)
        {
            foreach (CustomAttribute attribute in provider.CustomAttributes)
            {
                Add(attribute.AttributeType);
                foreach (CustomAttributeArgument argument in attribute.ConstructorArguments)
                    if (argument.Value is TypeReference typeArgument)
                        Add(typeArgument);
            }
        }

        Add(type.BaseType);
        AddAttributes(type);
        foreach (InterfaceImplementation i in type.Interfaces)
            Add(i.InterfaceType);
        foreach (FieldDefinition field in type.Fields)
        {
            Add(field.FieldType);
            AddAttributes(field);
        }
        foreach (PropertyDefinition property in type.Properties)
            Add(property.PropertyType);
        foreach (EventDefinition e in type.Events)
            Add(e.EventType);
        foreach (MethodDefinition method in type.Methods)
        {
            AddMethod(method);
            AddAttributes(method);
            if (!method.HasBody)
                continue;
            foreach (VariableDefinition variable in method.Body.Variables)
                Add(variable.VariableType);
            foreach (Instruction instruction in method.Body.Instructions)
            {
                switch (instruction.Operand)
                {
                    case TypeReference t: Add(t); break;
                    case MethodReference m: AddMethod(m); break;
                    case FieldReference f: Add(f.DeclaringType); Add(f.FieldType); break;
                }
            }
        }
        return found;
    }
}
