"""Where a run starts: rank 0 prepares the run directory and vets the checkpoint to resume, and
every rank learns the outcome from one broadcast.

A refusal (another run's checkpoint, a changed config, the old checkpoint format) is raised on
rank 0 with its message; the other ranks receive it through the same broadcast and stop with a
short pointer to it, so no rank is left waiting in a collective for one that has gone.
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from monosemantic.distributed import Ranks, RankStopped
from monosemantic.errors import UserError
from monosemantic.runs import RunDir
from monosemantic.train.checkpoint import clean_partial, legacy_checkpoints
from monosemantic.train.config import TrainConfig
from monosemantic.train.rundir import prepare_run_dir


def resume_point(cfg: TrainConfig, ranks: Ranks) -> tuple[int, Path] | None:
    """The checkpoint every rank resumes from, or None for a fresh start (all ranks call it)."""
    if not ranks.active:
        return _prepare(cfg)
    resume, error = None, None
    if ranks.is_main:
        try:
            resume = _prepare(cfg)
        except Exception as err:  # any failure: the others must not wait for rank 0
            error = err
    shared = [error is not None, resume]
    dist.broadcast_object_list(shared, src=0)
    failed, resume = shared
    if error is not None:
        raise error
    if failed:
        raise RankStopped(f"rank {ranks.rank}: stopped, rank 0 refused the run (its "
                                "error says why)")
    return resume


def _prepare(cfg: TrainConfig) -> tuple[int, Path] | None:
    run = RunDir(cfg.out)
    legacy = legacy_checkpoints(run.path) if run.cfg_path.exists() else []
    if legacy:
        raise UserError(
            f"{run.checkpoints_dir} holds checkpoints in the single-file format of earlier "
            f"versions ({legacy[-1][1].name}), which this version does not resume: finish the "
            "run with the version that started it, or delete the checkpoints folder to "
            "restart it")
    resume = prepare_run_dir(cfg)  # vets the checkpoint too (`snapshot.check_snapshot`)
    clean_partial(run.path)  # before any rank writes a checkpoint
    return resume
