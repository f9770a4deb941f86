"""What keeps a torchrun training run from hanging or dying with a bare traceback.

Two guards: every rank must have resolved the same options (checked once, before training), and
a collective that fails or waits past `--dist-timeout` becomes an error that says what most
likely happened and what to do. Gloo raises its timeouts and lost connections as plain
RuntimeErrors, caught here. NCCL's watchdog aborts the process itself on a timeout (logging
"Watchdog caught collective operation timeout"), so on GPUs the message is NCCL's, not ours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.train.config import TrainConfig

if TYPE_CHECKING:  # distributed.py imports this module
    from monosemantic.train.distributed import Ranks

MAX_LISTED_FIELDS = 8
"""Differing options named in the mismatch message; the rest are counted."""


class RankFailureError(UserError, RuntimeError):
    """A collective failed because another rank died, stalled or never joined."""


def check_same_options(ranks: Ranks, cfg: TrainConfig) -> None:
    """Fail on every rank when the ranks resolved different options (rank 0's message names
    them and the ranks); otherwise return. A collective: all ranks must call it.

    No option may differ: even the logging cadence decides when the ranks meet in a collective.
    """
    if not ranks.active:
        return
    flat = _flatten(to_dict(cfg))
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


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dicts as one level with dotted names (`sae.k`), as the CLI spells them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@contextmanager
def explained_failures(rank: int, timeout_s: float, joining: bool = False) -> Iterator[None]:
    """Turn a collective's timeout or lost connection inside the block into a
    `RankFailureError` that says what to do; other exceptions pass unchanged. `joining`: the
    block joins the process group."""
    try:
        yield
    except RuntimeError as err:
        explained = explain_failure(err, rank, timeout_s, joining)
        if explained is None:
            raise
        raise explained from err


def explain_failure(err: RuntimeError, rank: int, timeout_s: float,
                    joining: bool = False) -> RankFailureError | None:
    """The error to show for a failed collective, or None when `err` is not one."""
    if isinstance(err, UserError):
        return None
    text = str(err)
    cause = text.strip().splitlines()[0][:300] if text.strip() else type(err).__name__
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        if joining:
            what = (f"not every rank joined the process group within --dist-timeout "
                    f"{timeout_s:g} s: a rank failed before joining or started late")
        else:
            what = (f"a collective waited longer than --dist-timeout {timeout_s:g} s for the "
                    "other ranks: one of them died, stalled (stuck on I/O, swapping) or is "
                    "running a different command")
        advice = ("look at the other ranks' output for their first error; if a rank is just "
                  "slow (rank 0 evaluates and writes checkpoints while the others wait), raise "
                  "--dist-timeout")
    elif "connection reset" in lowered or "connection closed" in lowered or \
            isinstance(err, dist.DistNetworkError):
        what = "the connection to another rank broke during a collective: that rank most " \
               "likely died"
        advice = ("look at the other ranks' output for their first error (running out of "
                  "memory is a common cause); the run resumes from its last checkpoint")
    else:
        return None
    return RankFailureError(f"rank {rank}: {what}. What to do: {advice}. ({cause})")
