using System.Collections.Immutable;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace Updp.Tests;

/// <summary>
/// Which namespaces of an assembly use which, read from its metadata: a type uses every type of
/// the same assembly that appears in its base type, interfaces, generic constraints, custom
/// attributes, field, method, property and local-variable signatures, and the IL of its methods
/// (types, fields and methods it names, generic instantiations included). Nested and
/// compiler-generated types (lambdas' closures, iterators, async state machines) count as their
/// outermost declaring type. Constants, enum values and default arguments are copied into the IL
/// by the compiler, and <c>cref</c>s and <c>nameof</c> leave no trace, so they do not count.
/// </summary>
internal static class NamespaceGraph
{
    private static readonly IReadOnlyDictionary<ushort, OperandType> Operands =
        typeof(OpCodes).GetFields().Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => (ushort)o.Value, o => o.OperandType);

    /// <summary>
    /// The edges between the namespaces of <paramref name="assemblyPath"/> that start with
    /// <paramref name="prefix"/>: namespace → the other namespaces its types use.
    /// </summary>
    public static SortedDictionary<string, SortedSet<string>> Read(string assemblyPath, string prefix)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        var decoder = new Decoder(md);
        var edges = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var handle in md.TypeDefinitions)
        {
            var from = NamespaceOf(md, handle);
            if (!InScope(from, prefix))
            {
                continue;
            }
            if (!edges.TryGetValue(from, out var targets))
            {
                edges[from] = targets = new SortedSet<string>(StringComparer.Ordinal);
            }
            foreach (var used in decoder.TypesUsedBy(handle, pe))
            {
                var to = NamespaceOf(md, used);
                if (to != from && InScope(to, prefix))
                {
                    targets.Add(to);
                }
            }
        }
        return edges;
    }

    /// <summary>
    /// A cycle of <paramref name="edges"/> as the path that closes it (<c>[a, b, a]</c>), or null when
    /// the graph has none. Nodes and edges are visited in ordinal order, so the answer is the same every time.
    /// </summary>
    public static IReadOnlyList<string>? FindCycle(IReadOnlyDictionary<string, SortedSet<string>> edges)
    {
        var done = new HashSet<string>(StringComparer.Ordinal);
        var path = new List<string>();
        var onPath = new HashSet<string>(StringComparer.Ordinal);

        IReadOnlyList<string>? Visit(string node)
        {
            if (onPath.Contains(node))
            {
                return [.. path.SkipWhile(n => n != node), node];
            }
            if (!done.Add(node))
            {
                return null;
            }
            path.Add(node);
            onPath.Add(node);
            foreach (var next in edges.TryGetValue(node, out var targets) ? targets : [])
            {
                if (Visit(next) is { } cycle)
                {
                    return cycle;
                }
            }
            path.RemoveAt(path.Count - 1);
            onPath.Remove(node);
            return null;
        }

        foreach (var node in edges.Keys.Order(StringComparer.Ordinal))
        {
            if (Visit(node) is { } cycle)
            {
                return cycle;
            }
        }
        return null;
    }

    /// <summary>The graph as one <c>from → to, to</c> line per namespace.</summary>
    public static string Format(IReadOnlyDictionary<string, SortedSet<string>> edges) =>
        string.Join('\n', edges.Select(e => $"{e.Key} → {string.Join(", ", e.Value)}"));

    private static bool InScope(string ns, string prefix) => ns == prefix || ns.StartsWith(prefix + ".", StringComparison.Ordinal);

    private static string NamespaceOf(MetadataReader md, TypeDefinitionHandle handle)
    {
        var type = md.GetTypeDefinition(handle);
        while (type.GetDeclaringType() is { IsNil: false } outer)
        {
            type = md.GetTypeDefinition(outer);
        }
        return md.GetString(type.Namespace);
    }

    private sealed class Decoder(MetadataReader md) : ISignatureTypeProvider<ImmutableArray<TypeDefinitionHandle>, object?>
    {
        public IEnumerable<TypeDefinitionHandle> TypesUsedBy(TypeDefinitionHandle handle, PEReader pe)
        {
            var type = md.GetTypeDefinition(handle);
            var used = new List<TypeDefinitionHandle>();
            used.AddRange(Entity(type.BaseType));
            used.AddRange(type.GetInterfaceImplementations().SelectMany(i => Entity(md.GetInterfaceImplementation(i).Interface)));
            used.AddRange(Attributes(type.GetCustomAttributes()));
            used.AddRange(Constraints(type.GetGenericParameters()));
            foreach (var f in type.GetFields())
            {
                var field = md.GetFieldDefinition(f);
                used.AddRange(field.DecodeSignature(this, null));
                used.AddRange(Attributes(field.GetCustomAttributes()));
            }
            foreach (var p in type.GetProperties())
            {
                var property = md.GetPropertyDefinition(p);
                used.AddRange(Signature(property.DecodeSignature(this, null)));
                used.AddRange(Attributes(property.GetCustomAttributes()));
            }
            foreach (var m in type.GetMethods())
            {
                var method = md.GetMethodDefinition(m);
                used.AddRange(Signature(method.DecodeSignature(this, null)));
                used.AddRange(Attributes(method.GetCustomAttributes()));
                used.AddRange(Constraints(method.GetGenericParameters()));
                used.AddRange(method.GetParameters().SelectMany(p => Attributes(md.GetParameter(p).GetCustomAttributes())));
                if (method.RelativeVirtualAddress != 0)
                {
                    used.AddRange(Body(pe.GetMethodBody(method.RelativeVirtualAddress)));
                }
            }
            return used;
        }

        private IEnumerable<TypeDefinitionHandle> Body(MethodBodyBlock body)
        {
            if (!body.LocalSignature.IsNil)
            {
                foreach (var local in md.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(this, null))
                {
                    foreach (var t in local)
                    {
                        yield return t;
                    }
                }
            }
            var il = body.GetILReader();
            while (il.RemainingBytes > 0)
            {
                ushort code = il.ReadByte();
                if (code == 0xFE)
                {
                    code = (ushort)(0xFE00 | il.ReadByte());
                }
                switch (Operands[code])
                {
                    case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineTok or OperandType.InlineType:
                        foreach (var t in Entity(MetadataTokens.EntityHandle(il.ReadInt32())))
                        {
                            yield return t;
                        }
                        break;
                    case OperandType.InlineSwitch:
                        var targets = il.ReadInt32();
                        il.Offset += 4 * targets;
                        break;
                    case OperandType.InlineI8 or OperandType.InlineR:
                        il.Offset += 8;
                        break;
                    case OperandType.InlineBrTarget or OperandType.InlineI or OperandType.InlineSig or OperandType.InlineString or OperandType.ShortInlineR:
                        il.Offset += 4;
                        break;
                    case OperandType.InlineVar:
                        il.Offset += 2;
                        break;
                    case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                        il.Offset += 1;
                        break;
                }
            }
        }

        // A type, field or method token: the types it names, its declaring type included.
        private ImmutableArray<TypeDefinitionHandle> Entity(EntityHandle handle)
        {
            if (handle.IsNil)
            {
                return [];
            }
            switch (handle.Kind)
            {
                case HandleKind.TypeDefinition:
                    return [(TypeDefinitionHandle)handle];
                case HandleKind.TypeSpecification:
                    return md.GetTypeSpecification((TypeSpecificationHandle)handle).DecodeSignature(this, null);
                case HandleKind.FieldDefinition:
                    var field = md.GetFieldDefinition((FieldDefinitionHandle)handle);
                    return [field.GetDeclaringType(), .. field.DecodeSignature(this, null)];
                case HandleKind.MethodDefinition:
                    var method = md.GetMethodDefinition((MethodDefinitionHandle)handle);
                    return [method.GetDeclaringType(), .. Signature(method.DecodeSignature(this, null))];
                case HandleKind.MemberReference:
                    var member = md.GetMemberReference((MemberReferenceHandle)handle);
                    var parent = member.Parent.Kind is HandleKind.TypeDefinition or HandleKind.TypeSpecification or HandleKind.MethodDefinition
                        ? Entity(member.Parent)
                        : [];
                    return member.GetKind() == MemberReferenceKind.Field
                        ? [.. parent, .. member.DecodeFieldSignature(this, null)]
                        : [.. parent, .. Signature(member.DecodeMethodSignature(this, null))];
                case HandleKind.MethodSpecification:
                    var spec = md.GetMethodSpecification((MethodSpecificationHandle)handle);
                    return [.. Entity(spec.Method), .. spec.DecodeSignature(this, null).SelectMany(t => t)];
                default:
                    return [];
            }
        }

        private static IEnumerable<TypeDefinitionHandle> Signature(MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature) =>
            signature.ReturnType.Concat(signature.ParameterTypes.SelectMany(t => t));

        private IEnumerable<TypeDefinitionHandle> Attributes(CustomAttributeHandleCollection attributes) =>
            attributes.SelectMany(a => Entity(md.GetCustomAttribute(a).Constructor));

        private IEnumerable<TypeDefinitionHandle> Constraints(GenericParameterHandleCollection parameters) =>
            parameters.SelectMany(p => md.GetGenericParameter(p).GetConstraints())
                .SelectMany(c => Entity(md.GetGenericParameterConstraint(c).Type));

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => [handle];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => [];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) =>
            reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);

        public ImmutableArray<TypeDefinitionHandle> GetGenericInstantiation(ImmutableArray<TypeDefinitionHandle> genericType, ImmutableArray<ImmutableArray<TypeDefinitionHandle>> typeArguments) =>
            [.. genericType, .. typeArguments.SelectMany(t => t)];

        public ImmutableArray<TypeDefinitionHandle> GetFunctionPointerType(MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature) => [.. Signature(signature)];

        public ImmutableArray<TypeDefinitionHandle> GetModifiedType(ImmutableArray<TypeDefinitionHandle> modifier, ImmutableArray<TypeDefinitionHandle> unmodifiedType, bool isRequired) => unmodifiedType;

        public ImmutableArray<TypeDefinitionHandle> GetArrayType(ImmutableArray<TypeDefinitionHandle> elementType, ArrayShape shape) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetSZArrayType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetByReferenceType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPointerType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPinnedType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetGenericMethodParameter(object? genericContext, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetGenericTypeParameter(object? genericContext, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetPrimitiveType(PrimitiveTypeCode typeCode) => [];
    }
}
