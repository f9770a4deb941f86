"""A seeded pseudo-random permutation of `range(n)` evaluated pointwise, in O(1) memory.

A globally shuffled pass over a store of any size needs the permuted index of position i
without holding a permutation array (8 bytes per row: 8 GB for 10⁹ rows). A Feistel network
over the smallest even number of bits that covers n is a bijection on [0, 2^bits); "cycle
walking" (re-applying it until the value lands below n) restricts that bijection to [0, n).
Batch b of a shuffled pass is then `permute(arange(b·B, (b+1)·B))`, so resuming at batch b
costs nothing. Small stores (n <= `MATERIALIZE_MAX`) use an explicit numpy permutation
instead: it costs little memory there, and a Feistel network on few bits mixes poorly.
"""

from __future__ import annotations

import numpy as np

_ROUNDS = 4  # Luby-Rackoff: four rounds of a random-like function give a strong PRP
MATERIALIZE_MAX = 1 << 20
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a well-spread 64-bit hash (uint64 arithmetic wraps)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


class Permutation:
    """`Permutation(n, seed)[positions]` -> the shuffled indices at those positions.

    The same (n, seed) always gives the same permutation, on any machine.
    """

    def __init__(self, n: int, seed: int, materialize_max: int = MATERIALIZE_MAX):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = n
        self.table = (np.random.default_rng(seed).permutation(n) if n <= materialize_max
                      else None)
        self.half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
        self.mask = np.uint64((1 << self.half) - 1)
        state = np.random.SeedSequence(seed).generate_state(_ROUNDS, dtype=np.uint64)
        self.keys = [np.uint64(k) for k in state]

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << shift) | right

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n})")
        if self.table is not None:
            return self.table[pos]
        out = self._feistel(pos.astype(np.uint64))
        todo = out >= np.uint64(self.n)
        while todo.any():  # cycle walking; the domain is < 4n, so few rounds on average
            out[todo] = self._feistel(out[todo])
            todo[todo] = out[todo] >= np.uint64(self.n)
        return out.astype(np.int64)
