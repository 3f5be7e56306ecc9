"""Binary BCH syndromes over GF(2^m): how SPEX reads a low-order feature set out of sign patterns.

SPEX evaluates every aliasing bucket under a set of *delays* ``d``; in a bucket that holds a single term
``k`` (a feature set), each delay flips the bucket's sign by ``(-1)^{<d, k>}``. Choosing the delays as
the rows of a BCH parity-check matrix turns those sign bits into the BCH syndrome of ``k``, and a BCH
decoder recovers any ``k`` with ``|k| <= t`` from ``m * t`` bits, where ``n < 2^m``. Column ``j`` of the
parity-check matrix holds the bits of ``alpha^(i*j)`` for odd ``i < 2t``.
"""

from __future__ import annotations

import numpy as np

# Primitive polynomials over GF(2), bit i = coefficient of x^i (checked in the tests).
PRIMITIVE_POLYNOMIALS = {
    2: 0b111,
    3: 0b1011,
    4: 0b10011,
    5: 0b100101,
    6: 0b1000011,
    7: 0b10000011,
    8: 0b100011101,
    9: 0b1000010001,
    10: 0b10000001001,
    11: 0b100000000101,
    12: 0b1000001010011,
    13: 0b10000000011011,
    14: 0b100010001000011,
    15: 0b1000000000000011,
    16: 0b10001000000001011,
}


class GF2m:
    """GF(2^m) with log/antilog tables (elements are ints in polynomial basis)."""

    def __init__(self, m: int) -> None:
        if m not in PRIMITIVE_POLYNOMIALS:
            raise ValueError(f"GF(2^m) supported for 2 <= m <= 16, got m={m}")
        self.m = m
        self.order = 2**m - 1
        exp = np.zeros(2 * self.order, dtype=np.int64)
        log = np.full(2**m, -1, dtype=np.int64)
        x = 1
        for i in range(self.order):
            exp[i] = x
            log[x] = i
            x <<= 1
            if x >> m:
                x ^= PRIMITIVE_POLYNOMIALS[m]
        exp[self.order :] = exp[: self.order]
        self.exp = exp
        self.log = log

    def mul(self, a: int, b: int) -> int:
        """Product of two field elements (through the log/antilog tables); 0 when either is 0."""
        if a == 0 or b == 0:
            return 0
        return int(self.exp[self.log[a] + self.log[b]])

    def inv(self, a: int) -> int:
        """Multiplicative inverse of a non-zero field element.

        Raises:
            ZeroDivisionError: ``a`` is 0.
        """
        if a == 0:
            raise ZeroDivisionError("0 has no inverse in GF(2^m)")
        return int(self.exp[(self.order - self.log[a]) % self.order])

    def power(self, exponent: np.ndarray | int) -> np.ndarray:
        """``alpha ** exponent`` (vectorised)."""
        return self.exp[np.mod(exponent, self.order)]


def field_bits_for(n: int) -> int:
    """Smallest ``m >= 2`` with ``n <= 2^m - 1``."""
    return max(2, int(np.ceil(np.log2(n + 1))))


class BCHSyndromeCode:
    """Parity-check delays and a decoder for feature sets of size ``<= t`` over ``n`` features."""

    def __init__(self, n: int, t: int) -> None:
        if t < 1:
            raise ValueError(f"t must be >= 1, got {t}")
        self.n = n
        self.t = t
        self.field = GF2m(field_bits_for(n))
        m = self.field.m
        cols = np.arange(n, dtype=np.int64)
        rows = []
        for i in range(1, 2 * t, 2):
            elements = self.field.power(i * cols)
            rows.extend(((elements >> r) & 1).astype(bool) for r in range(m))
        self.parity_check = np.array(rows, dtype=bool)  # (m * t, n)

    @property
    def n_delays(self) -> int:
        """Number of BCH delays (rows of the parity-check matrix): ``m * t``."""
        return self.parity_check.shape[0]

    def syndrome_bits(self, support: tuple[int, ...]) -> np.ndarray:
        """Syndrome of the feature set ``support``: the XOR of its parity-check columns, ``(n_delays,)`` bool.

        This is the sign pattern (True = flipped) a bucket holding only ``support`` shows across the delays;
        the empty set has the all-False syndrome.
        """
        if not support:
            return np.zeros(self.n_delays, dtype=bool)
        return np.bitwise_xor.reduce(self.parity_check[:, list(support)], axis=1)

    def decode(self, bits: np.ndarray) -> tuple[int, ...] | None:
        """Feature set whose syndrome is ``bits``, or ``None`` when none of size ``<= t`` exists."""
        gf = self.field
        m = gf.m
        weights = 1 << np.arange(m, dtype=np.int64)
        odd = [int(bits[r * m : (r + 1) * m].astype(np.int64) @ weights) for r in range(self.t)]
        syndromes = [0] * (2 * self.t + 1)  # syndromes[i] = S_i, 1-based
        for r, value in enumerate(odd):
            syndromes[2 * r + 1] = value
        for i in range(2, 2 * self.t + 1, 2):
            half = syndromes[i // 2]
            syndromes[i] = gf.mul(half, half)
        locator = self._berlekamp_massey(syndromes[1:])
        degree = len(locator) - 1
        while degree > 0 and locator[degree] == 0:
            degree -= 1
        if degree == 0:
            return () if not any(odd) else None
        if degree > self.t:
            return None
        # Chien search: position j is in the set iff locator(alpha^-j) == 0.
        positions = np.arange(self.n, dtype=np.int64)
        total = np.zeros(self.n, dtype=np.int64)
        for power, coef in enumerate(locator[: degree + 1]):
            if coef:
                total ^= gf.power(gf.log[coef] - power * positions)
        roots = np.nonzero(total == 0)[0]
        if roots.size != degree:
            return None
        return tuple(int(r) for r in roots)

    def _berlekamp_massey(self, syndromes: list[int]) -> list[int]:
        gf = self.field
        current = [1]
        previous = [1]
        length = 0
        shift = 1
        last_discrepancy = 1
        for step, s in enumerate(syndromes):
            discrepancy = s
            for i in range(1, length + 1):
                if i < len(current):
                    discrepancy ^= gf.mul(current[i], syndromes[step - i])
            if discrepancy == 0:
                shift += 1
                continue
            factor = gf.mul(discrepancy, gf.inv(last_discrepancy))
            candidate = current + [0] * max(0, len(previous) + shift - len(current))
            for i, coef in enumerate(previous):
                candidate[i + shift] ^= gf.mul(factor, coef)
            if 2 * length <= step:
                previous = current
                length = step + 1 - length
                last_discrepancy = discrepancy
                shift = 1
            else:
                shift += 1
            current = candidate
        return current
