namespace AdaTSQ.Methods.QuaRot;

/// <summary>How a <see cref="HadamardRotation"/> of K channels is built.</summary>
public enum HadamardConstruction
{
    /// <summary>
    /// One Hadamard matrix over all K channels, <c>H_m ⊗ H_{2^k}</c> with <c>K = m·2^k</c> (QuaRot's choice): an
    /// outlier is spread over all K channels. Needs an order-m Hadamard matrix (<see cref="Hadamard.Factor"/>).
    /// </summary>
    Kronecker,

    /// <summary>
    /// Independent Sylvester blocks of a power-of-two size b along the diagonal (b must divide K): cheaper and
    /// available for any K with a power-of-two factor ≥ b, but an outlier is spread over its block's b channels only.
    /// </summary>
    BlockDiagonal,
}
