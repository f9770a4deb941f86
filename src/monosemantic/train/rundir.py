"""The run directory: start a new run, or decide that an existing one is resumed.

A directory holding a `cfg.json` is a run. With a checkpoint it is resumed, provided the resolved
config matches in every field that changes the result (`config.changed_fields`); without one it
restarts from scratch. Anything else that is not empty is refused rather than overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from monosemantic.config import save_config, to_dict
from monosemantic.errors import UserError
from monosemantic.train.checkpoint import latest_checkpoint
from monosemantic.train.config import TrainConfig, changed_fields
from monosemantic.train.logger import truncate_metrics


def prepare_run_dir(cfg: TrainConfig) -> tuple[int, Path] | None:
    """Create or check `cfg.out`; write cfg.json; return the checkpoint to resume, if any.

    `cfg` must already be resolved (`config.resolve`) so that defaults filled from the data are
    compared too.
    """
    run_dir = Path(cfg.out)
    cfg_path = run_dir / "cfg.json"
    resume = None
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        resume = latest_checkpoint(run_dir)
        if resume is not None:
            diff = changed_fields(old, to_dict(cfg))
            if diff:
                changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise UserError(
                    f"{run_dir} holds a run with a different config ({changes}); resuming would "
                    "mix two runs. Pass the original options to resume it, or choose a new "
                    "output directory")
        truncate_metrics(run_dir / "metrics.jsonl", resume[0] if resume else None)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} exists, is not empty and is not a training run (no "
                        "cfg.json): choose a new output directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg_path)
    return resume
