"""`GroupedBottomK`: for each of G groups, the R entries with the smallest keys seen so far.

One structure serves every example list of the analysis pass:
- top activations: group = feature, key = -activation;
- uniform samples (random active examples, interval samples, zero examples): key = a uniform
  random number per entry. The R smallest of i.i.d. uniform keys are a uniform sample without
  replacement of everything offered (a "bottom-k sketch"), so a reservoir needs no counters.

Updates are vectorised over all entries of a batch: entries whose key cannot beat their group's
current worst kept key are dropped first (after the first batches that is nearly all of them),
then the survivors are merged into their groups with one sort and one `topk` over the touched
groups only. Memory: G·R·(4 + 8 + 4) bytes for keys, rows and values, plus the payload.

The uniform keys come from `uniform_keys`, a hash of (seed, stream, row, feature) rather than a
random generator's next numbers: an entry gets the same key however the rows are batched and
however the features are sliced, so a dictionary analysed in feature slices keeps exactly the
samples of the unsliced analysis.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from monosemantic.analysis.windows import ROW_BITS


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose output bits look independent."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_keys(seed: int, stream: int, rows_E: Tensor, feats_E: Tensor) -> Tensor:
    """float32 keys in [0, 1), uniform and independent across (row, feature) entries, and a
    fixed function of (seed, stream, global row, global feature).

    Distinct entries hash to distinct 64-bit values (a bijection of feature·2^40 + row); the key
    is their top 24 bits, as many as a float32 in [0, 1) holds (what `torch.rand` gives too).
    """
    salt = _mix64(np.array([(seed & 0xFFFFFFFF) << 8 | (stream & 0xFF)], dtype=np.uint64))
    entry_E = (feats_E.to(torch.int64) << ROW_BITS) | rows_E.to(torch.int64)
    hash_E = _mix64(entry_E.numpy().view(np.uint64) ^ salt)
    return torch.from_numpy((hash_E >> np.uint64(40)).astype(np.float32) * np.float32(2 ** -24))


class GroupedBottomK:
    """Per group, the `r` entries (row, value, payload) with the smallest keys.

    Empty slots hold key +inf and row -1. `payload_width` > 0 keeps, per slot, a float window
    `acts_GRW` and an int32 window `tokens_GRW` (filled by the caller through `update`'s
    `payload_fn`, only for the entries that get in). While updating, slots are unordered (an
    entering entry takes the slot of the one it evicts, so no payload moves); `sort_()` orders
    them by key, ties by row, once the stream ends.
    """

    def __init__(self, n_groups: int, r: int, payload_width: int = 0):
        if n_groups >= 1 << 31:  # `update` packs the group into the high half of an int64
            raise ValueError(f"at most 2^31 - 1 groups, got {n_groups}")
        self.n_groups, self.r, self.width = n_groups, r, payload_width
        self.keys_GR = torch.full((n_groups, r), float("inf"))
        self.rows_GR = torch.full((n_groups, r), -1, dtype=torch.int64)
        self.vals_GR = torch.zeros(n_groups, r)
        self.acts_GRW = torch.zeros(n_groups, r, payload_width)
        self.tokens_GRW = torch.full((n_groups, r, payload_width), -1, dtype=torch.int32)
        self.offset_GR = torch.zeros(n_groups, r, dtype=torch.int16)
        # The worst kept key per group: an entry must beat it to get in.
        self._worst_G = torch.full((n_groups,), float("inf"))

    def nbytes(self) -> int:
        """Bytes held by the state (what the pass keeps for this list)."""
        tensors = (self.keys_GR, self.rows_GR, self.vals_GR, self.acts_GRW, self.tokens_GRW,
                   self.offset_GR, self._worst_G)
        return sum(t.numel() * t.element_size() for t in tensors)

    def update(self, group_E: Tensor, key_E: Tensor, row_E: Tensor, val_E: Tensor,
               payload_fn=None) -> None:
        """Offer entries; `payload_fn(row_Q, group_Q) -> (acts_QW, tokens_QW, offset_Q)` is
        called once with the entries that got in (those may still be pushed out later)."""
        if self.r == 0 or group_E.numel() == 0:
            return
        # Strict `<`: on ties the entry seen first stays (deterministic, corpus order).
        hit_E = key_E < self._worst_G[group_E]
        if not bool(hit_E.any()):
            return
        group_C, key_C, row_C, val_C = group_E[hit_E], key_E[hit_E], row_E[hit_E], val_E[hit_E]
        # Sort candidates by (group, key), ties in offer order: one stable sort of a composite.
        order = torch.sort((group_C << 32) | _ordered_bits(key_C), stable=True).indices
        group_C, key_C, row_C, val_C = group_C[order], key_C[order], row_C[order], val_C[order]
        touched_U, first_U, counts_U = _runs(group_C)
        rank_C = torch.arange(len(group_C)) - torch.repeat_interleave(first_U, counts_U)
        keep_C = rank_C < self.r  # at most r candidates per group can matter
        group_C, key_C, row_C, val_C, rank_C = (group_C[keep_C], key_C[keep_C], row_C[keep_C],
                                               val_C[keep_C], rank_C[keep_C])
        slot_C = torch.searchsorted(touched_U, group_C)
        n_touched = len(touched_U)
        # Candidate columns: as many as the busiest touched group has (after the first
        # batches that is a few, not r), so the merge below sorts r + c entries per group.
        n_cand = int(min(self.r, int(counts_U.max())))
        new_keys_UC = torch.full((n_touched, n_cand), float("inf"))
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
    """int64 in [0, 2^32) ordered as the float32 keys are, equal for equal keys (no NaN)."""
    # + 0.0 turns -0.0 into +0.0: they compare equal, so they must tie here too.
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
