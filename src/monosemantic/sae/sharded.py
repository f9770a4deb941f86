"""Feature-sharded forward passes: the pieces every architecture shares.

In feature-parallel training each process holds the contiguous features [lo, hi) of a
dictionary of F (the encoder columns, decoder rows and per-feature buffers of that slice; see
`SAE.feature_dims`) and every process sees the same whole batch. Each process decodes its own
codes into a partial reconstruction; the partials are summed over the processes, so x̂, the
losses and hence the gradient of every replicated quantity (b_dec) come out the same on all of
them. Two autograd functions carry the gradients across that boundary:

- `sum_over_shards` (partial decodes, partial penalty sums): forward all-reduces; backward passes
  the gradient through unchanged, because every process computes the same loss from the sum and
  so already holds the gradient of the sum (summing it again would multiply it by N);
- `copy_to_shards` (b_dec where the encoder subtracts it from x): forward is the identity;
  backward sums the processes' gradients, since each one's encoder slice contributes its part.

Top-k selections are made globally: each process offers its own best candidates with their
global feature ids, they are all-gathered, and every process picks the winners from the same
gathered list (identical input, identical choice), then keeps the winners in its own slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from monosemantic.sae.base import BatchGroup


class FeatureGroup(Protocol):
    """The processes that share one dictionary, each holding the features [lo, hi) of
    `n_features` (equal contiguous slices in process order), all on the same batch."""

    @property
    def lo(self) -> int: ...

    @property
    def hi(self) -> int: ...

    @property
    def n_features(self) -> int:
        """F, the whole dictionary's size."""
        ...

    @property
    def world(self) -> int: ...

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over the processes, in place (no autograd)."""
        ...

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        """Minimum over the processes, in place."""
        ...

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Maximum over the processes, in place."""
        ...

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's `t` (same shape everywhere) concatenated along dim 0 in order."""
        ...


class _SumOverShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: FeatureGroup) -> torch.Tensor:
        return group.sum_(t.clone(memory_format=torch.contiguous_format))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return grad, None


class _CopyToShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: FeatureGroup) -> torch.Tensor:
        ctx.group = group
        return t.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return ctx.group.sum_(grad.clone(memory_format=torch.contiguous_format)), None


def sum_over_shards(t: torch.Tensor, group: FeatureGroup) -> torch.Tensor:
    """`t` summed over the processes; the gradient passes back unchanged (module docstring)."""
    return _SumOverShards.apply(t, group)


def copy_to_shards(t: torch.Tensor, group: FeatureGroup) -> torch.Tensor:
    """`t` (the same on every process) used by each process's slice: the backward sums the
    processes' gradients."""
    return _CopyToShards.apply(t, group)


RANDN_CHUNK_FLOATS = 1 << 22
"""`randn_rows` draws this many floats at a time (rounded to whole rows, 16 at least)."""


def randn_rows(n_rows: int, width: int, lo: int, hi: int) -> torch.Tensor:
    """Rows [lo, hi) of `torch.randn(n_rows, width)` drawn from the global CPU generator, which
    ends where that whole draw leaves it; memory: the rows kept plus one chunk.

    The whole matrix is drawn in chunks of a multiple of 16 rows and the other rows dropped:
    torch's CPU normal sampler turns each 16 uniforms into 16 normals (a draw of 16 or more
    values; a ragged end is redrawn from 16 fresh uniforms), so chunks that start at multiples
    of 16 values and a last chunk of at least 16 values give the very same numbers (checked by
    `tests/unit/test_sae_sharded_init.py`)."""
    if n_rows * width < 16:
        return torch.randn(n_rows, width)[lo:hi]
    step = max(16, RANDN_CHUNK_FLOATS // max(width, 1) // 16 * 16)
    starts = list(range(0, n_rows, step))
    if len(starts) > 1 and (n_rows - starts[-1]) * width < 16:
        starts.pop()  # a tail too short for the 16-wide sampler joins the chunk before it
    kept = []
    for first, stop in zip(starts, starts[1:] + [n_rows]):
        chunk = torch.randn(stop - first, width)
        if first < hi and stop > lo:
            kept.append(chunk[max(lo, first) - first:min(hi, stop) - first])
    return torch.cat(kept)


def _gather_columns(t_BK: torch.Tensor, group: FeatureGroup) -> torch.Tensor:
    """The processes' [B, K] tensors side by side: [B, world·K]."""
    return group.gather_cat(t_BK.T.contiguous()).T


@torch.no_grad()
def row_topk_in_shard(z_BS: torch.Tensor, k: int, group: FeatureGroup
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of the whole z [B, F], of which this process holds the
    columns [lo, hi) as `z_BS`; returns the winners in this slice as (row_N ascending, slice
    index_N, z_N). Ties go to the lower feature id, the same on every process."""
    n_rows, width = z_BS.shape
    vals_BK, idx_BK = torch.topk(z_BS, min(k, width), dim=1)
    idx_BK, order_BK = idx_BK.sort(dim=1)  # ids ascending, so the gathered list is too
    vals_BK = vals_BK.gather(1, order_BK)
    all_vals_BC = _gather_columns(vals_BK, group)
    all_ids_BC = _gather_columns(idx_BK + group.lo, group)
    # A stable sort keeps equal values in id order: the lowest ids win ties.
    order_BC = torch.sort(all_vals_BC, dim=1, descending=True, stable=True)[1]
    win_BK = all_ids_BC.gather(1, order_BC[:, :k])
    win_BK = win_BK.sort(dim=1)[0]
    mine_BK = (win_BK >= group.lo) & (win_BK < group.hi)
    flat_N = mine_BK.reshape(-1).nonzero().squeeze(1)
    row_N = flat_N // k
    idx_N = win_BK.reshape(-1)[flat_N] - group.lo
    return row_N, idx_N, z_BS[row_N, idx_N]



class BothAxes:
    """Every process of a data × features grid: a `FeatureGroup` (this row's shards) crossed
    with a `BatchGroup` (this column's slices of the batch). A `BatchGroup` itself."""

    def __init__(self, features: FeatureGroup, batch: BatchGroup):
        self.features, self.batch = features, batch

    @property
    def world(self) -> int:
        return self.features.world * self.batch.world

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return self.batch.sum_(self.features.sum_(t))

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        return self.batch.min_(self.features.min_(t))

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        return self.batch.gather_cat(self.features.gather_cat(t))
