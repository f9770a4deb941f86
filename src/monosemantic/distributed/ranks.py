"""This process among the processes torchrun started: `Ranks` (the collectives every command
uses) and `process_group` (joining the group for a block).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (or with WORLD_SIZE 1) there is no
process group and `Ranks()` is the single process, whose helpers do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import PrefixStore
from torch.distributed.rendezvous import rendezvous

from monosemantic.distributed.failures import explained_failures
from monosemantic.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (the default: the only one)."""

    rank: int = 0
    """0 .. world - 1; rank 0 alone writes the run directory."""
    world: int = 1
    """Number of training processes."""
    group: dist.ProcessGroup | None = None
    """The process group these ranks form (None: the default group, every process); a grid's
    row or column is a `Ranks` with its own group (`train/mesh.py`)."""

    @property
    def active(self) -> bool:
        """Whether there are other ranks (a process group exists)."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over the ranks in place (no autograd) and return it."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        """Minimum of `t` over the ranks, in place."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Maximum of `t` over the ranks, in place."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def global_rank(self, rank: int) -> int:
        """The global rank of this group's member `rank`."""
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's `t` (same shape on all ranks) concatenated along dim 0 in rank order."""
        if not self.active:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.cat(parts)

    def average_grads_(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (a missing one counts as zeros)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=self.group)
            p.grad.div_(self.world)

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> None:
        """Overwrite `t` with that of this group's member `src` (default 0), in place."""
        if self.active:
            dist.broadcast(t, src=self.global_rank(src), group=self.group)

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.group)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return None if value is None else int(value)


@contextmanager
def process_group(device: torch.device, timeout_s: float = 600.0
                  ) -> Iterator[tuple[Ranks, torch.device]]:
    """Join torchrun's process group for the block (gloo on CPU, nccl on CUDA) and yield this
    rank and its device (cuda:LOCAL_RANK for CUDA); outside torchrun yield `Ranks()` and
    `device` unchanged. Joining and every collective wait at most `timeout_s` for the other
    ranks (`failures.explained_failures` says why they failed)."""
    world = _env_int("WORLD_SIZE")
    if world is None or world == 1:
        yield Ranks(), device
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index not in (None, 0):
            raise UserError(f"--device {device} under torchrun: give --device cuda (each rank "
                            "uses cuda:LOCAL_RANK)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    with explained_failures(rank, timeout_s, joining=True):
        _init_process_group("nccl" if device.type == "cuda" else "gloo", rank, world,
                            timedelta(seconds=timeout_s))
    try:
        with explained_failures(rank, timeout_s):
            yield Ranks(rank=rank, world=world), device
    finally:
        dist.destroy_process_group()


def _init_process_group(backend: str, rank: int, world: int, timeout: timedelta) -> None:
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        dist.init_process_group(backend, timeout=timeout)
        return
    # torchrun (--max-restarts) keeps one store for all attempts: without a prefix of its own,
    # a restarted group would find the addresses its dead predecessors published and fail to
    # connect to them.
    store, _, _ = next(rendezvous("env://", timeout=timeout))
    dist.init_process_group(backend, store=PrefixStore(f"attempt_{restart}", store),
                            rank=rank, world_size=world, timeout=timeout)
