"""The data × features grid of ranks (`--parallel features --feature-ranks Q`).

N = P·Q ranks form P data groups of Q feature ranks each: rank p·Q + q holds feature slice q
and reads data slice p. The Q ranks of a row share one dictionary and one slice of every batch
(a feature group); the P ranks of a column hold the same features and average their gradients
(a data group). `MeshAxis` is `Ranks` restricted to one such group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from monosemantic.distributed import Ranks
from monosemantic.errors import UserError


@dataclass(frozen=True)
class MeshAxis(Ranks):
    """This rank's place in one group of the grid; `group` None: all ranks (the default
    process group)."""

    group: Any = None
    """The torch.distributed process group of this axis (None: the default group)."""

    def global_rank(self, axis_rank: int) -> int:
        """The global rank of the member `axis_rank` of this group."""
        return axis_rank if self.group is None else dist.get_global_rank(self.group, axis_rank)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Maximum of `t` over the group, in place."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.cat(parts)

    def average_grads_(self, params: Sequence[torch.nn.Parameter]) -> None:
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=self.group)
            p.grad.div_(self.world)

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> None:
        """Overwrite `t` with that of the group's member `src`, in place."""
        if self.active:
            dist.broadcast(t, src=self.global_rank(src), group=self.group)

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.group)


def grid(ranks: Ranks, feature_ranks: int) -> tuple[MeshAxis, MeshAxis]:
    """(feature axis, data axis) of this rank in a grid of `feature_ranks` columns; every rank
    must call it (it creates the groups). `UserError` if the world does not split so."""
    world, q = ranks.world, feature_ranks
    if q < 1 or world % q:
        raise UserError(f"--feature-ranks {q} does not divide the {world} ranks into feature "
                        "groups: give a divisor of the number of ranks (0: all of them)")
    p = world // q
    if p == 1:  # no data axis: the feature group is everyone
        return MeshAxis(rank=ranks.rank, world=world), MeshAxis()
    features = data = None
    # Every rank creates every group, in the same order (new_group is collective).
    for row in range(p):
        group = dist.new_group(list(range(row * q, (row + 1) * q)))
        if ranks.rank // q == row:
            features = group
    for col in range(q):
        group = dist.new_group(list(range(col, world, q)))
        if ranks.rank % q == col:
            data = group
    return (MeshAxis(rank=ranks.rank % q, world=q, group=features),
            MeshAxis(rank=ranks.rank // q, world=p, group=data))
