"""The files a transcoder set writes beside its runs and the table it prints.

OUT/transcoders.json: {"version": 1, "model": SPEC, "layers": {"6": "layer_06", ...}} (run
folders relative to OUT, finished layers only): the set as `monosemantic graph` reads it.
OUT/transcoders_eval.json: per layer its run's eval.json figures (that transcoder spliced in
alone), and `all_replaced`: the loss with every transcoder of the set spliced in at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monosemantic.errors import UserError
from monosemantic.evals.report import trainer_dead
from monosemantic.fsutil import atomic_write_text, json_ready
from monosemantic.runs import RunDir
from monosemantic.transcoders.config import SET_EVAL, SET_FILE, layer_dir_name

SET_VERSION = 1

LAYER_FIELDS = ("variance_explained", "nmse", "l0", "dead_fraction", "dead_window_tokens",
                "ce_clean", "ce_spliced", "ce_zero", "loss_recovered", "kl", "delta_ce")
"""The figures of a layer's eval.json kept in transcoders_eval.json."""

ALL_REPLACED_FORMULA = (
    "every transcoder of the set spliced in the same forward (each predicting its hook_mlp_out "
    "from its hook_mlp_in of that forward); zero-ablated: every one of those hook_mlp_out set "
    "to 0; loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean)")


def write_set_file(out: Path, model: str, layers: list[int]) -> Path:
    """OUT/transcoders.json for the finished `layers`."""
    path = Path(out) / SET_FILE
    _write(path, {"version": SET_VERSION, "model": model,
                  "layers": {str(layer): layer_dir_name(layer) for layer in sorted(layers)}})
    return path


def read_set_file(out: Path) -> dict[int, Path]:
    """Layer -> run folder of the set in `out` (from its transcoders.json)."""
    path = Path(out) / SET_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({err}): make the set with "
                        "`monosemantic transcoders OUT --store HARVEST`") from err
    if data.get("version") != SET_VERSION:
        raise UserError(f"{path} has version {data.get('version')!r}, this version reads "
                        f"{SET_VERSION}")
    return {int(layer): Path(out) / name for layer, name in data["layers"].items()}


def layer_figures(run: RunDir) -> dict[str, Any]:
    """A finished layer's figures from its eval.json (the trainer's dead figure included)."""
    metrics = (run.read_json(run.eval_path).get("metrics")) or {}
    figures = {key: metrics.get(key) for key in LAYER_FIELDS}
    if figures["dead_fraction"] is None:
        dead = trainer_dead(run.extra, run.n_features)
        figures.update(dead_fraction=dead.get("dead_fraction"),
                       dead_window_tokens=dead.get("dead_window_tokens"))
    return {"run": run.path.name, **figures}


def write_set_eval(out: Path, data: dict[str, Any]) -> Path:
    path = Path(out) / SET_EVAL
    _write(path, data)
    return path


def _write(path: Path, data: dict[str, Any]) -> None:
    """Strict JSON in the order given (layers in numeric order, not sorted as strings)."""
    text = json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


_COLUMNS = (  # header, key, width, format
    ("layer", None, 5, "{}"), ("VE", "variance_explained", 7, "{:.4f}"),
    ("L0", "l0", 6, "{:.1f}"), ("dead", "dead_fraction", 6, "{:.1%}"),
    ("CE spliced", "ce_spliced", 10, "{:.4f}"), ("CE zero", "ce_zero", 8, "{:.4f}"),
    ("loss rec.", "loss_recovered", 9, "{:.4f}"), ("KL", "kl", 7, "{:.4f}"),
)


def format_set_table(per_layer: dict[str, dict[str, Any]]) -> str:
    """One aligned line per layer: held-out figures and the loss with that transcoder alone."""
    lines = ["  ".join(h.rjust(w) for h, _k, w, _f in _COLUMNS)]
    for layer, figures in per_layer.items():
        cells = []
        for _h, key, width, fmt in _COLUMNS:
            value = layer if key is None else figures.get(key)
            cells.append(("n/a" if value is None else fmt.format(value)).rjust(width))
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_all_replaced(loss: dict[str, Any], n_layers: int) -> str:
    """The all-replaced loss in three lines."""
    return (f"all {n_layers} transcoders spliced in at once ({loss['n_predictions']:,} "
            f"predictions): CE clean {loss['ce_clean']:.4f}, spliced {loss['ce_spliced']:.4f}, "
            f"those MLP outputs zeroed {loss['ce_zero']:.4f} nats\n"
            f"loss recovered {_num(loss['loss_recovered'])}, KL(clean || spliced) "
            f"{loss['kl']:.4f} nats, delta CE {loss['delta_ce']:+.4f} nats")


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"
