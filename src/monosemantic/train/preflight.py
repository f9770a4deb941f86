"""Every rank of a torchrun training run must have resolved the same options: checked once,
before training, so that a mismatch stops every rank with a message instead of a hang or a
silently different run. (Failed collectives are explained by `distributed.failures`.)
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from monosemantic.config import dotted, to_dict
from monosemantic.errors import UserError
from monosemantic.train.config import TrainConfig

if TYPE_CHECKING:
    from monosemantic.distributed import Ranks

MAX_LISTED_FIELDS = 8
"""Differing options named in the mismatch message; the rest are counted."""


def check_same_options(ranks: Ranks, cfg: TrainConfig) -> None:
    """Fail on every rank when the ranks resolved different options (rank 0's message names
    them and the ranks); otherwise return. A collective: all ranks must call it.

    No option may differ: even the logging cadence decides when the ranks meet in a collective.
    """
    if not ranks.active:
        return
    flat = dotted(to_dict(cfg))
    digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()
    digests: list[Any] = [None] * ranks.world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) == 1:
        return
    every: list[Any] = [None] * ranks.world
    dist.all_gather_object(every, flat)
    if ranks.is_main:
        raise UserError(describe_mismatch(every))
    # Named here too: torchrun may stop rank 0 before it prints, once this rank has exited.
    flags = ", ".join(f"--{_flag(k)}" for k in differing_fields(every))
    raise UserError(f"rank {ranks.rank}: the ranks were given different options ({flags}; "
                    "rank 0's error lists their values)")


def describe_mismatch(configs: list[dict[str, Any]]) -> str:
    """The message for flattened configs (index = rank) that differ: each differing option
    with the ranks that hold each of its values."""
    differing = differing_fields(configs)
    lines = [f"  --{_flag(k)}: {_by_value(k, configs)}"
             for k in differing[:MAX_LISTED_FIELDS]]
    if len(differing) > MAX_LISTED_FIELDS:
        lines.append(f"  ... and {len(differing) - MAX_LISTED_FIELDS} more")
    return ("the ranks were given different options:\n" + "\n".join(lines) + "\nevery rank "
            "must run the same command: check the launch script and any per-node environment "
            "or config file that builds the options")


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
    """The dotted names whose values are not the same in all of `configs`, sorted."""
    keys = sorted(set().union(*configs))
    return [k for k in keys if len({_text(c.get(k)) for c in configs}) > 1]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _by_value(key: str, configs: list[dict[str, Any]]) -> str:
    ranks_by_value: dict[str, list[int]] = {}
    for rank, cfg in enumerate(configs):
        ranks_by_value.setdefault(_text(cfg.get(key)), []).append(rank)
    return "; ".join(f"{value} on rank{'s' if len(ranks) > 1 else ''} "
                     f"{', '.join(map(str, ranks))}" for value, ranks in ranks_by_value.items())


def _text(value: Any) -> str:
    return json.dumps(value, default=str)

