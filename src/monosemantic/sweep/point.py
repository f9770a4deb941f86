"""One grid point: train its run (or resume it), evaluate it, write its `SweepRecord`.

The record is built from the run's own files (the SAE's metadata and RUN/eval.json) and the
grid point alone, so it is the same whichever process, and in whichever order, made it.

FLOPs (`flops`, the scaling fits' compute axis): `FLOPS_FORMULA` = 12·d·F·tokens, i.e. the
usual 6 FLOPs per weight per token (forward 2, backward 4) for the 2·d·F weights of the encoder
and decoder. It is a dense-equivalent count, the same for every architecture: topk and
batchtopk are charged as if they decoded all F features (the sparse decoder's savings, the
top-k selection and the AuxK loss are not counted), and biases, the optimizer and evaluation
are left out. Compute is therefore proportional to F × tokens within a sweep, whatever the
architecture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.config import from_dict
from monosemantic.console import redirected
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.runs import RunDir
from monosemantic.sweep.config import SweepConfig
from monosemantic.sweep.grid import GridPoint
from monosemantic.sweep.record import SweepRecord

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

FLOPS_FORMULA = "12·d·F·tokens"
"""Training compute: 6 FLOPs per weight and token, 2·d·F weights, dense for every
architecture (see the module docstring)."""


def training_flops(d_in: int, n_features: int, tokens: int) -> float:
    """`FLOPS_FORMULA`: dense-equivalent training FLOPs of an SAE of width d and F features."""
    return 12.0 * d_in * n_features * tokens


def record_path(run: RunDir) -> Path:
    """Where a finished grid point keeps its line of the sweep table."""
    return run.path / RunDir.SWEEP_RECORD


def read_record(run: RunDir) -> SweepRecord | None:
    """The run's saved record; None while the point is not finished."""
    path = record_path(run)
    if not path.is_file():
        return None
    return from_dict(SweepRecord, json.loads(path.read_text()))


def is_trained(run: RunDir) -> bool:
    """Training has finished: the trainer wrote the final SAE (atomically, last)."""
    return run.sae_dir.is_dir() and run.cfg_path.is_file()


def run_point(cfg: SweepConfig, point: GridPoint, lm: LoadedModel | None) -> SweepRecord:
    """Train (or resume) the point's run unless it has finished, evaluate it, save its record.

    `lm`: the store's model for the loss recovered (None: not measured)."""
    from monosemantic.train.trainer import train

    run = RunDir(Path(cfg.out) / point.name)
    if not is_trained(run):
        train(point.train_config(cfg))
    metrics = evaluate_run(cfg, run, lm)
    record = build_record(run, point, metrics, lm is not None)
    atomic_write_text(record_path(run), record.to_json() + "\n")
    return record


def evaluate_run(cfg: SweepConfig, run: RunDir, lm: LoadedModel | None) -> dict[str, Any]:
    """Held-out metrics of the run's SAE (RUN/eval.json, as `monosemantic eval` writes it)."""
    from monosemantic.evals.report import EvalConfig, run_eval

    contexts = cfg.loss_contexts if lm is not None else 0
    eval_cfg = EvalConfig(run=run.path, n_tokens=cfg.eval_tokens, n_contexts=contexts,
                          dense_threshold=cfg.train.dense_threshold, device=cfg.train.device,
                          plot=False)
    try:
        with redirected(None):  # the sweep prints its own table
            return run_eval(eval_cfg, lm)["metrics"]
    except UserError as err:
        hint = " (the sweep measures the loss recovered unless --loss-recovered false)" \
            if lm is not None else ""
        raise UserError(f"{run.path}: {err}{hint}") from err


def build_record(run: RunDir, point: GridPoint, metrics: dict[str, Any],
                 spliced: bool) -> SweepRecord:
    """The point's line of the sweep table from its run's files and held-out `metrics`."""
    from monosemantic.evals.report import trainer_dead

    run = RunDir.open(run.path)
    training = run.training
    final = training.get("final_train") or {}
    if "loss" not in final:
        raise UserError(f"{run.path}: the SAE's metadata has no final training loss (trained "
                        "by an older version?): delete the run folder and run the sweep again")
    d_in, n_features = run.d_in, run.n_features
    tokens = int(training["tokens"])
    dead = trainer_dead(run.extra, n_features)
    field_name, value = point.sparsity
    return SweepRecord(
        run=point.name,
        architecture=str(run.metadata["architecture"]),
        n_features=n_features,
        d_in=d_in,
        tokens=tokens,
        steps=int(training["steps"]),
        batch_size=int(training["batch_size"]),
        lr=float(training["lr"]),
        flops=training_flops(d_in, n_features, tokens),
        flops_formula=FLOPS_FORMULA,
        train_loss=float(final["loss"]),
        train_loss_terms={k[len("loss_"):]: float(v) for k, v in sorted(final.items())
                          if k.startswith("loss_")},
        sparsity={field_name: value},
        l0=_number(metrics.get("l0")),
        variance_explained=_number(metrics.get("variance_explained")),
        dead_fraction=dead.get("dead_fraction"),
        dead_window_tokens=dead.get("dead_window_tokens"),
        loss_recovered=_number(metrics.get("loss_recovered")) if spliced else None,
        seed=int(training["seed"]),
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
