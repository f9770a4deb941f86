"""What commands run under torchrun (harvest, analyze) share between ranks: one verdict on a
setup step every rank runs, and Python objects gathered on rank 0.

A setup step that fails on some rank (a path it cannot read, a model it cannot load) must stop
every rank, or the others would wait for it in their next collective until the process group
times out. `agree` runs the step on every rank and shares each rank's error in one all-gather;
if any failed, rank 0 raises a UserError naming the ranks and their errors, and the others
raise `RankStopped` (a UserError too, so the command exits with its usual code) right away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch.distributed as dist

from monosemantic.distributed.ranks import Ranks
from monosemantic.errors import UserError

T = TypeVar("T")


class RankStopped(UserError):
    """Raised on a rank other than 0 when some rank failed a shared step; rank 0 reports it."""


def gather_all(ranks: Ranks, obj: object) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not ranks.active:
        return [obj]
    out: list = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(ranks: Ranks, obj: object) -> list | None:
    """Every rank's `obj` in rank order on rank 0; None on the others."""
    if not ranks.active:
        return [obj]
    out: list | None = [None] * ranks.world if ranks.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def agree(ranks: Ranks, step: Callable[[], T]) -> T:
    """`step()` on every rank; if it raised a UserError or OSError on any rank, stop them all
    (module docstring). Without other ranks the error is raised as it is."""
    if not ranks.active:
        return step()
    result: T | None = None
    error: str | None = None
    try:
        result = step()
    except (UserError, OSError) as err:
        error = str(err) or type(err).__name__
    errors = gather_all(ranks, error)
    if any(e is not None for e in errors):
        if ranks.is_main:
            raise UserError(failure_message(errors))
        raise RankStopped(f"rank {ranks.rank} stopped: rank 0 reports the error")
    return result  # type: ignore[return-value]  # no rank failed, so `step` returned


def failure_message(errors: list[str | None]) -> str:
    """One line per distinct error, naming the ranks that hit it (in rank order)."""
    by_error: dict[str, list[int]] = {}
    for rank, error in enumerate(errors):
        if error is not None:
            by_error.setdefault(error, []).append(rank)
    lines = []
    for error, failed in by_error.items():
        who = (f"rank {failed[0]}" if len(failed) == 1
               else "ranks " + ", ".join(str(r) for r in failed))
        lines.append(f"on {who} of {len(errors)}: {error}")
    return "\n".join(lines)
