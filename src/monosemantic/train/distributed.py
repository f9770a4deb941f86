"""Data-parallel training's metric sums: every rank accumulates its own, rank 0 holds the total.

Every rank holds the same SAE and optimizer, trains on its own equal slice of every global
batch, and averages its gradients with the others before the optimizer step (`Ranks`), so all
ranks stay identical; only the metric sums differ until `fold_sums` moves them to rank 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monosemantic.distributed import Ranks

if TYPE_CHECKING:
    from monosemantic.train.state import TrainState


def fold_sums(ranks: Ranks, state: TrainState) -> None:
    """Move the ranks' metric sums to rank 0 (others keep zeros) and share the first
    non-finite step; idempotent, so it may run before every read of the sums."""
    if not ranks.active:
        return
    losses, recon = state.losses, state.recon
    for sums in (losses.sums, recon.sums, recon.sum_x_D):
        ranks.sum_(sums)
    rows = int(ranks.sum_(torch.tensor(recon.rows, device=recon.sums.device)))
    never = torch.iinfo(torch.int64).max
    bad = losses.first_bad_step
    first = ranks.min_(torch.where(bad < 0, torch.full_like(bad, never), bad))
    bad.copy_(torch.where(first == never, torch.full_like(bad, -1), first))
    recon.rows = rows
    if not ranks.is_main:
        drop_sums(state)


def drop_sums(state: TrainState) -> None:
    """Zero the metric sums (not the step counts): a rank other than 0 after `fold_sums` or
    after loading a checkpoint, whose sums rank 0 already holds."""
    state.losses.sums.zero_()
    state.recon.sums.zero_()
    state.recon.sum_x_D.zero_()
    state.recon.rows = 0
