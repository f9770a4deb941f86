"""The data × features grid of ranks (`--parallel features --feature-ranks Q`).

N = P·Q ranks form P data groups of Q feature ranks each: rank p·Q + q holds feature slice q
and reads data slice p. The Q ranks of a row share one dictionary and one slice of every batch
(a feature group); the P ranks of a column hold the same features and average their gradients
(a data group). Each is a `Ranks` with its own process group.
"""

from __future__ import annotations

import torch.distributed as dist

from monosemantic.distributed import Ranks
from monosemantic.errors import UserError


def grid(ranks: Ranks, feature_ranks: int) -> tuple[Ranks, Ranks]:
    """(feature axis, data axis) of this rank in a grid of `feature_ranks` columns; every rank
    must call it (it creates the groups). `UserError` if the world does not split so."""
    world, q = ranks.world, feature_ranks
    if q < 1 or world % q:
        raise UserError(f"--feature-ranks {q} does not divide the {world} ranks into feature "
                        "groups: give a divisor of the number of ranks (0: all of them)")
    p = world // q
    if p == 1:  # no data axis: the feature group is everyone
        return Ranks(rank=ranks.rank, world=world), Ranks()
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
    # This rank is a member of both, so they are groups (not new_group's non-member marker).
    assert isinstance(features, dist.ProcessGroup) and isinstance(data, dist.ProcessGroup)
    return (Ranks(rank=ranks.rank % q, world=q, group=features),
            Ranks(rank=ranks.rank // q, world=p, group=data))
