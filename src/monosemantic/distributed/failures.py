"""Collective failures explained: a gloo timeout or lost connection becomes an error that says
what most likely happened and what to do. NCCL's watchdog aborts the process itself on a timeout
(logging "Watchdog caught collective operation timeout"), so on GPUs the message is NCCL's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist

from monosemantic.errors import UserError


class RankFailureError(UserError, RuntimeError):
    """A collective failed because another rank died, stalled or never joined."""


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
