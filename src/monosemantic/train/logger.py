"""Metric sinks: RUN/metrics.jsonl always; Weights & Biases and TensorBoard when asked for."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.runs import RunDir


def truncate_metrics(path: Path, last_step: int | None) -> None:
    """Keep only records up to `last_step` (all records dropped when None), atomically.

    A run killed after its last checkpoint may have logged steps that the resumed run repeats;
    dropping them keeps one record per (split, step).
    """
    path = Path(path)
    if not path.exists():
        return
    kept = []
    if last_step is not None:
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the crash
                continue
            if record.get("step", 0) <= last_step:
                kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/Inf; write them as strings so the file stays valid JSON lines.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def require_backends(wandb_project: str | None, tensorboard: bool) -> None:
    """Fail before any work when an asked-for logging backend is not installed."""
    if wandb_project and importlib.util.find_spec("wandb") is None:
        raise UserError("--wandb-project needs the wandb package: pip install wandb "
                        "(or drop the option)")
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or drop the option)")


class MetricsLogger:
    """Appends one JSON object per call to metrics.jsonl and mirrors it to optional backends."""

    def __init__(self, run_dir: Path, wandb_project: str | None = None,
                 tensorboard: bool = False, config: dict[str, Any] | None = None):
        self.path = RunDir(run_dir).metrics_path
        self._fh = open(self.path, "a")
        self._wandb = None
        self._tb = None
        require_backends(wandb_project, tensorboard)
        if wandb_project:
            # wandb is in no extra (require_backends checked it is installed), so the type
            # checker's environment lacks it.
            import wandb  # pyright: ignore[reportMissingImports]

            self._wandb = wandb.init(project=wandb_project, config=config,
                                     dir=str(run_dir), name=Path(run_dir).name)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        self._fh.flush()
        split = record.get("split", "train")
        scalars = {f"{split}/{k}": v for k, v in record.items()
                   if isinstance(v, (int, float)) and k not in ("step", "split")}
        if self._wandb is not None:
            self._wandb.log(scalars, step=record["step"])
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self._fh.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._tb is not None:
            self._tb.close()
