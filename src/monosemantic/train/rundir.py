"""The run directory: start a new run, or decide that an existing one is resumed.

A directory holding a `cfg.json` is a run. With a checkpoint it is resumed, provided the resolved
config matches in every field that changes the result (`config.changed_fields`); without one it
restarts from scratch. Any other folder is refused rather than overwritten, unless it holds
only what a run may hold before training (`RunDir.BEFORE_TRAINING`: its own store, the demo's
options).
"""

from __future__ import annotations

import json
from pathlib import Path

from monosemantic.config import save_config, to_dict
from monosemantic.errors import UserError
from monosemantic.runs import RunDir
from monosemantic.train.checkpoint import latest_checkpoint
from monosemantic.train.config import TrainConfig, changed_fields
from monosemantic.train.logger import truncate_metrics
from monosemantic.train.snapshot import check_snapshot


def prepare_run_dir(cfg: TrainConfig) -> tuple[int, Path] | None:
    """Create or check `cfg.out`; write cfg.json; return the checkpoint to resume, if any.

    `cfg` must already be resolved (`config.resolve`) so that defaults filled from the data are
    compared too.
    """
    run = RunDir(cfg.out)
    resume = None
    if run.cfg_path.exists():
        old = json.loads(run.cfg_path.read_text())
        resume = latest_checkpoint(run.path)
        if resume is not None:
            diff = changed_fields(old, to_dict(cfg))
            if diff:
                changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise UserError(
                    f"{run.path} holds a run with a different config ({changes}); resuming "
                    "would mix two runs. Pass the original options to resume it, or choose a "
                    "new output directory")
            check_snapshot(resume[1], cfg)  # before the metrics are cut back to it
        truncate_metrics(run.metrics_path, resume[0] if resume else None)
    else:
        run.check_trainable()
    run.path.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.cfg_path)
    return resume
