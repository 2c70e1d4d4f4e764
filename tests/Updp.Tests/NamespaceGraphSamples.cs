// Four namespaces that use each other in a circle, each through a different kind of reference, for
// NamespaceGraphTests: the reader must see every kind, and the cycle check must reject the circle.

namespace Updp.Tests.GraphSamples.Body
{
    /// <summary>Uses Signature in a method body only (a constructor call; the signature says object).</summary>
    internal static class BodyUser
    {
        public static object Make() => new Signature.SignatureUser();
    }
}

namespace Updp.Tests.GraphSamples.Signature
{
    /// <summary>Uses Lambdas in a property's type only.</summary>
    internal sealed class SignatureUser
    {
        public Lambdas.LambdaUser? Field { get; set; }
    }
}

namespace Updp.Tests.GraphSamples.Lambdas
{
    /// <summary>Uses Generics as a type argument inside a lambda only (compiled into a nested closure class).</summary>
    internal sealed class LambdaUser
    {
        public static Func<object> Factory { get; } = () => new List<Generics.GenericArgument>();
    }
}

namespace Updp.Tests.GraphSamples.Generics
{
    /// <summary>Uses Body through <c>typeof</c> only, closing the circle.</summary>
    internal sealed class GenericArgument
    {
        public static string Name() => typeof(Body.BodyUser).Name;
    }
}
