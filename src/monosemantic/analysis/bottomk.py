"""`GroupedBottomK`: for each of G groups, the R entries with the smallest keys seen so far.

One structure serves every example list of the analysis pass:
- top activations: group = feature, key = -activation;
- uniform samples (random active examples, interval samples, zero examples): key = a uniform
  random number per entry. The R smallest of i.i.d. uniform keys are a uniform sample without
  replacement of everything offered (a "bottom-k sketch"), so a reservoir needs no counters.

Updates are vectorised over all entries of a batch: entries whose key cannot beat their group's
current worst kept key are dropped first (after the first batches that is nearly all of them),
then the survivors are merged into their groups with one sort and one `topk` over the touched
groups only. Memory: G·R·(k + 8 + 4) bytes for keys, rows and values, plus the payload, with
k = 4 for float32 keys (top activations) and 8 for float64 keys (uniform samples).

The uniform keys come from `uniform_keys`, a hash of (seed, stream, row, feature) rather than a
random generator's next numbers: an entry gets the same key however the rows are batched and
however the features are sliced, so a dictionary analysed in feature slices keeps exactly the
samples of the unsliced analysis. They keep 53 bits of the hash (a float64): with 24 bits (a
float32) a group of N entries has about N / 2^24 of them on every key value, so beyond a few
million entries the last places of a sample went to tied keys, and ties go to the earlier row:
the samples leaned to the start of the corpus. With 53 bits a tie needs N near 2^53 / R,
far beyond the 2^40 rows a run can hold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from monosemantic.analysis.windows import ROW_BITS

PayloadFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
"""(row_Q, group_Q) -> (acts_QW, tokens_QW, offset_Q): the windows of entries that got in."""


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose output bits look independent."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


UNIFORM_KEYS = torch.float64
"""dtype of `uniform_keys` (a `GroupedBottomK` of uniform samples stores its keys in it)."""


def uniform_keys(seed: int, stream: int, rows_E: Tensor, feats_E: Tensor) -> Tensor:
    """float64 keys in [0, 1), uniform and independent across (row, feature) entries, and a
    fixed function of (seed, stream, global row, global feature).

    Distinct entries hash to distinct 64-bit values (a bijection of feature·2^40 + row); the key
    is their top 53 bits (`keys_of_hashes`).
    """
    salt = _mix64(np.array([(seed & 0xFFFFFFFF) << 8 | (stream & 0xFF)], dtype=np.uint64))
    entry_E = (feats_E.to(torch.int64) << ROW_BITS) | rows_E.to(torch.int64)
    return keys_of_hashes(_mix64(entry_E.numpy().view(np.uint64) ^ salt))


def keys_of_hashes(hash_E: np.ndarray) -> Tensor:
    """uint64 hashes -> float64 keys in [0, 1): the top 53 bits, all a float64 holds exactly."""
    return torch.from_numpy((hash_E >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)


class GroupedBottomK:
    """Per group, the `r` entries (row, value, payload) with the smallest keys.

    Empty slots hold key +inf and row -1. `payload_width` > 0 keeps, per slot, a float window
    `acts_GRW` and an int32 window `tokens_GRW` (filled by the caller through `update`'s
    `payload_fn`, only for the entries that get in). While updating, slots are unordered (an
    entering entry takes the slot of the one it evicts, so no payload moves); `sort_()` orders
    them by key, ties by row, once the stream ends. Keys are stored as `key_dtype`: float32
    (e.g. -activation) or float64 (`uniform_keys`).
    """

    def __init__(self, n_groups: int, r: int, payload_width: int = 0,
                 key_dtype: torch.dtype = torch.float32):
        if n_groups >= 1 << 31:  # `update` packs the group into the high half of an int64
            raise ValueError(f"at most 2^31 - 1 groups, got {n_groups}")
        if key_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"keys are float32 or float64, got {key_dtype}")
        self.n_groups, self.r, self.width = n_groups, r, payload_width
        self.keys_GR = torch.full((n_groups, r), float("inf"), dtype=key_dtype)
        self.rows_GR = torch.full((n_groups, r), -1, dtype=torch.int64)
        self.vals_GR = torch.zeros(n_groups, r)
        self.acts_GRW = torch.zeros(n_groups, r, payload_width)
        self.tokens_GRW = torch.full((n_groups, r, payload_width), -1, dtype=torch.int32)
        self.offset_GR = torch.zeros(n_groups, r, dtype=torch.int16)
        # The worst kept key per group: an entry must beat it to get in.
        self._worst_G = torch.full((n_groups,), float("inf"), dtype=key_dtype)

    def nbytes(self) -> int:
        """Bytes held by the state (what the pass keeps for this list)."""
        tensors = (self.keys_GR, self.rows_GR, self.vals_GR, self.acts_GRW, self.tokens_GRW,
                   self.offset_GR, self._worst_G)
        return sum(t.numel() * t.element_size() for t in tensors)

    def update(self, group_E: Tensor, key_E: Tensor, row_E: Tensor, val_E: Tensor,
               payload_fn: PayloadFn | None = None) -> None:
        """Offer entries; `payload_fn(row_Q, group_Q) -> (acts_QW, tokens_QW, offset_Q)` is
        called once with the entries that got in (those may still be pushed out later)."""
        if self.r == 0 or group_E.numel() == 0:
            return
        key_E = key_E.to(self.keys_GR.dtype)
        # Strict `<`: on ties the entry seen first stays (deterministic, corpus order).
        hit_E = key_E < self._worst_G[group_E]
        if not bool(hit_E.any()):
            return
        group_C, key_C, row_C, val_C = group_E[hit_E], key_E[hit_E], row_E[hit_E], val_E[hit_E]
        # Sort candidates by (group, key), ties in offer order: one stable sort of a composite,
        # the group in the high 32 bits and the key's 32 order bits in the low ones. A float64
        # key has 64 order bits, too many to fit beside the group, so its top 32 stand in for
        # it (a second sort by the full key would double this sort's cost): candidates then
        # tie more often, and the cut below keeps every one tied with the r-th.
        bits_C = _ordered_bits(key_C)
        order = torch.sort((group_C << 32) | bits_C, stable=True).indices
        group_C, key_C, row_C, val_C, bits_C = (group_C[order], key_C[order], row_C[order],
                                               val_C[order], bits_C[order])
        touched_U, first_U, counts_U = _runs(group_C)
        rank_C = torch.arange(len(group_C)) - torch.repeat_interleave(first_U, counts_U)
        keep_C = rank_C < self.r  # at most r candidates per group can matter
        if key_C.dtype == torch.float64 and int(counts_U.max()) > self.r:
            # Ties of the truncated bits at the cut: the merge orders them by the full key.
            # The top 32 bits keep 20 of the mantissa's 52, so a uniform key's next candidate
            # ties it with probability about r / 2^20: a column now and then, not a batch's.
            last_U = first_U + counts_U.clamp(max=self.r) - 1
            keep_C |= bits_C == torch.repeat_interleave(bits_C[last_U], counts_U)
        group_C, key_C, row_C, val_C, rank_C = (group_C[keep_C], key_C[keep_C], row_C[keep_C],
                                               val_C[keep_C], rank_C[keep_C])
        slot_C = torch.searchsorted(touched_U, group_C)
        n_touched = len(touched_U)
        # Candidate columns: as many as the busiest touched group keeps (after the first
        # batches that is a few, not r), so the merge below sorts r + c entries per group.
        n_cand = int(rank_C.max()) + 1
        new_keys_UC = torch.full((n_touched, n_cand), float("inf"), dtype=key_C.dtype)
        new_keys_UC[slot_C, rank_C] = key_C
        new_rows_UC = torch.full((n_touched, n_cand), -1, dtype=torch.int64)
        new_rows_UC[slot_C, rank_C] = row_C
        # Which of the r + c (kept | candidate) entries per touched group survive: the r
        # smallest keys, ties broken by row (corpus order, as a brute-force sort would).
        keys_UM = torch.cat([self.keys_GR[touched_U], new_keys_UC], dim=1)
        rows_UM = torch.cat([self.rows_GR[touched_U], new_rows_UC], dim=1)
        best_UR = _order(keys_UM, rows_UM)[:, : self.r]
        kept_UM = torch.zeros_like(keys_UM, dtype=torch.bool).scatter_(1, best_UR, True)
        # Slots are unordered: each entering candidate takes the slot of an evicted old entry,
        # so the payload of entries that stay is never moved.
        evicted_UR = ~kept_UM[:, : self.r]
        entering_UC = kept_UM[:, self.r:] & torch.isfinite(new_keys_UC)
        evicted_UR &= evicted_UR.cumsum(1) <= entering_UC.sum(1, keepdim=True)
        u_Q, slot_Q = evicted_UR.nonzero(as_tuple=True)
        cand_u, cand_rank = entering_UC.nonzero(as_tuple=True)
        # Both lists are in row-major order with equal counts per group: pair them in order.
        pick_C = torch.full((n_touched, n_cand), -1, dtype=torch.int64)
        pick_C[slot_C, rank_C] = torch.arange(len(slot_C))
        src_Q = pick_C[cand_u, cand_rank]
        group_Q = touched_U[u_Q]
        self.keys_GR[group_Q, slot_Q] = key_C[src_Q]
        self.rows_GR[group_Q, slot_Q] = row_C[src_Q]
        self.vals_GR[group_Q, slot_Q] = val_C[src_Q].to(self.vals_GR.dtype)
        if self.width and payload_fn is not None and len(src_Q):
            acts_QW, tokens_QW, offset_Q = payload_fn(row_C[src_Q], group_Q)
            self.acts_GRW[group_Q, slot_Q] = acts_QW.to(self.acts_GRW.dtype)
            self.tokens_GRW[group_Q, slot_Q] = tokens_QW.to(torch.int32)
            self.offset_GR[group_Q, slot_Q] = offset_Q.to(torch.int16)
        self._worst_G[touched_U] = self.keys_GR[touched_U].max(dim=1).values

    def filled_GR(self) -> Tensor:
        """Bool [G, r]: which slots hold an entry."""
        return torch.isfinite(self.keys_GR)

    def sort_(self) -> GroupedBottomK:
        """Order each group's slots by increasing key, ties by row (empty slots last)."""
        order_GR = _order(self.keys_GR, self.rows_GR)
        for name in ("keys_GR", "rows_GR", "vals_GR", "offset_GR"):
            setattr(self, name, getattr(self, name).gather(1, order_GR))
        order_GRW = order_GR[..., None].expand(-1, -1, self.width)
        self.acts_GRW = self.acts_GRW.gather(1, order_GRW)
        self.tokens_GRW = self.tokens_GRW.gather(1, order_GRW)
        return self


def _ordered_bits(key_N: Tensor) -> Tensor:
    """int64 in [0, 2^32), nondecreasing in the keys (no NaN): for float32 keys ordered as they
    are and equal only for equal keys; for float64 keys the top 32 of their 64 order bits."""
    # + 0.0 turns -0.0 into +0.0: they compare equal, so they must tie here too.
    if key_N.dtype == torch.float64:
        bits_N = (key_N + 0.0).view(torch.int64) >> 32  # arithmetic: the sign stays
    else:
        bits_N = (key_N.to(torch.float32) + 0.0).view(torch.int32).to(torch.int64)
    # Sign bit set: larger magnitude is smaller, so reflect; clear: shift above the negatives.
    return torch.where(bits_N < 0, -1 - bits_N, bits_N + (1 << 31))


def _order(keys_GN: Tensor, rows_GN: Tensor) -> Tensor:
    """Per row of the matrix, indices sorting by key then row (two stable sorts)."""
    by_row = torch.sort(rows_GN, dim=1, stable=True).indices
    by_key = torch.sort(keys_GN.gather(1, by_row), dim=1, stable=True).indices
    return by_row.gather(1, by_key)


def _runs(sorted_N: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(values, first index, length) of each run of equal values in a sorted 1-D tensor."""
    values_U, counts_U = torch.unique_consecutive(sorted_N, return_counts=True)
    first_U = torch.cumsum(counts_U, 0) - counts_U
    return values_U, first_U, counts_U
