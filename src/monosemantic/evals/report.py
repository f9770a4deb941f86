"""`monosemantic eval RUN`: evaluate a trained SAE, print a table, write RUN/eval.json (and
RUN/density_histogram.png when matplotlib is installed)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.evals.evaluate import evaluate_sae
from monosemantic.evals.metrics import DEAD_FORMULA
from monosemantic.evals.plots import plot_density_histogram
from monosemantic.fsutil import atomic_write_text, json_ready
from monosemantic.runs import ModelOptions

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel


@dataclass
class EvalConfig:
    """Evaluate a trained SAE: reconstruction, sparsity, spliced-in model loss."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder); eval.json is written in the run. A
    pretrained SAE folder (or hf:OWNER/REPO/FOLDER) is evaluated in its run view with --store,
    all of whose rows it never trained on (docs/pretrained.md)."""
    n_tokens: int = 0
    """Held-out store rows (tokens) used for the reconstruction metrics; 0 = all held-out rows."""
    n_contexts: int = 32
    """Fresh corpus contexts (never harvested) for the spliced-in loss; 0 skips it (no model
    is loaded then)."""
    batch_size: int = 2
    """Contexts per model forward. Two [B, S, V] float32 logits tensors are kept at once, so
    memory grows as 8·B·S·V bytes (Gemma's V is 262,144: ~1 GB at B=2, S=256)."""
    row_batch_size: int = 4096
    """Store rows per SAE forward for the reconstruction metrics."""
    dense_threshold: float = 0.1
    """A feature is dense when it fires on more than this fraction of held-out tokens."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata={"short_flags": True})
    """The model to load instead of the run's, and a pretrained SAE folder's hooks (also
    spelled without `model-options.`: --model, --hook, --hook-out)."""
    store: Path | None = None
    """Activation store to read instead of the one recorded with the SAE (e.g. it moved)."""
    rows: str | None = None
    """Store rows START:STOP scored for the reconstruction metrics instead of the run's held-out
    rows (e.g. another run's held-out rows, to compare two SAEs on the same tokens); default:
    the held-out rows, or every row for an SAE that trained on none of the store's."""
    plot: bool = True
    """Write RUN/density_histogram.png (needs matplotlib; skipped quietly without it)."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if self.store is not None:
            self.store = Path(self.store)


def trainer_dead(extra: dict[str, Any], n_features: int) -> dict[str, Any]:
    """The trainer's dead figure at the end of training, with its window: `dead_fraction`,
    `n_dead`, `dead_window_tokens` ({} when the SAE's metadata lacks them)."""
    final = (extra.get("training") or {}).get("final_train") or {}
    # Runs from before metrics records carried their window: the configured one (the same).
    window = final.get("dead_window_tokens") or \
        (extra.get("train_config") or {}).get("dead_window_tokens")
    fraction = final.get("dead_fraction")
    if fraction is None or not window:
        return {}
    return {"dead_fraction": float(fraction), "n_dead": round(float(fraction) * n_features),
            "dead_window_tokens": int(window)}


def row_span(text: str, n_rows: int) -> range:
    """`"START:STOP"` as a range within the store's `n_rows` rows."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        span = range(int(start), int(stop))
    except ValueError:
        raise UserError(f"--rows must look like START:STOP (e.g. 294000:300000), got "
                        f"{text!r}") from None
    if not 0 <= span.start < span.stop <= n_rows:
        raise UserError(f"--rows {text} is not a non-empty span of the store's {n_rows:,} rows")
    return span


def run_eval(cfg: EvalConfig, lm: LoadedModel | None = None) -> dict[str, Any]:
    """Evaluate RUN/sae on its held-out rows and fresh contexts; write RUN/eval.json.

    Its metrics also carry the trainer's dead figure with its window (`trainer_dead`): the
    held-out rows are too few to call a feature that did not fire on them dead.

    `lm`: the run's model already loaded in the store's dtype, else loaded when needed."""
    run = cfg.model_options.open(cfg.run)
    if run.is_clt:
        from monosemantic.evals.clt import run_clt_eval

        return run_clt_eval(cfg, run, lm)
    if cfg.store is None and run.store_path is None and run.pretrained is None:
        # Not implemented: a streamed run's held-out rows come out of a shuffling buffer that
        # also fed training, so neither they nor "unseen" contexts can be recovered reliably.
        raise UserError(f"{run.path} was trained on streamed activations (no store): give an "
                        "activation store of the same model and hook with --store, harvested "
                        "from text the run did not train on (all its rows are evaluated)")
    store = run.store(cfg.store)
    device = str(resolve_device(cfg.device))
    sae = run.load_sae(device)
    # A store the SAE never trained on (a streamed run evaluated with --store) is all fresh.
    rows = run.holdout_rows if run.holdout_rows is not None else range(store.n_rows)
    if cfg.rows is not None:
        rows = row_span(cfg.rows, store.n_rows)
    if cfg.n_contexts == 0:
        lm = None
    elif lm is None:
        # The dtype the activations were harvested in, so the spliced run sees the same model.
        lm = run.load_model(device, dtype=store.model_dtype, spec=cfg.model_options.model)
    hook_out = run.hook_out  # a transcoder: scored on its target site
    transcoder = None if hook_out is None else (hook_out, run.target_store(cfg.store))
    result = evaluate_sae(lm, sae, run.hook, store, rows=rows, n_tokens=cfg.n_tokens,
                          n_contexts=cfg.n_contexts, batch_size=cfg.batch_size,
                          row_batch_size=cfg.row_batch_size, dense_threshold=cfg.dense_threshold,
                          transcoder=transcoder)
    result.update(model=cfg.model_options.model or run.model, store=str(store.path),
                  sae=str(run.sae_dir), architecture=sae.cfg.architecture,
                  n_features=int(sae.cfg.n_features), config=to_dict(cfg))
    dead = trainer_dead(run.extra, int(sae.cfg.n_features))
    if dead:
        result["metrics"].update(dead)
        result["formulas"]["dead"] = DEAD_FORMULA
    write_json(run.eval_path, result)
    say(format_table(result["metrics"]))
    say(f"wrote {run.eval_path}")
    if cfg.plot:
        kind, sites = (("SAE", run.hook) if hook_out is None
                       else ("transcoder", f"{run.hook} -> {hook_out}"))
        title = f"{sae.cfg.architecture} {kind}, {sae.cfg.n_features:,} features, {sites}"
        png = plot_density_histogram(result["density_histogram"], run.density_plot_path, title)
        if png is not None:
            say(f"wrote {png}")
    return result


# (key, label, format) rows of the printed table, in the order of the issue. A `{name}` in a
# label is the metric `name` (a token count: every dead / silent / dense figure says its window).
_TABLE = (
    ("l0", "L0 (active features / token)", "{:.2f}"),
    ("variance_explained", "variance explained", "{:.4f}"),
    ("nmse", "NMSE", "{:.4f}"),
    ("dead_fraction", "dead (no activation in the last {dead_window_tokens} training tokens)",
     "{:.2%}"),
    ("silent_fraction", "silent on the {silent_tokens} held-out tokens", "{:.2%}"),
    ("dense_fraction", "dense (on > {dense_threshold} of the {dense_tokens} held-out tokens)",
     "{:.2%}"),
    ("ce_clean", "CE clean (nats)", "{:.4f}"),
    ("ce_spliced", "CE spliced (nats)", "{:.4f}"),
    ("ce_zero", "CE zero-ablated (nats)", "{:.4f}"),
    ("loss_recovered", "loss recovered", "{:.4f}"),
    ("kl", "KL(clean || spliced) (nats)", "{:.4f}"),
    ("delta_ce", "delta CE (nats)", "{:+.4f}"),
)


class _Unknown(dict):
    """Label fields; one the metrics lack reads "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


def _label_fields(metrics: dict[str, Any]) -> _Unknown:
    fields = _Unknown({k: f"{v:,}" for k, v in metrics.items()
                       if k.endswith("_tokens") and isinstance(v, int)})
    if isinstance(metrics.get("dense_threshold"), (int, float)):
        fields["dense_threshold"] = f"{100 * metrics['dense_threshold']:.4g}%"
    return fields


def format_table(metrics: dict[str, Any]) -> str:
    """Two aligned columns: metric, value (rows missing from `metrics` are left out)."""
    fields = _label_fields(metrics)
    rows = []
    for key, label, fmt in _TABLE:
        if key not in metrics:
            continue
        value = metrics[key]
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        rows.append((label.format_map(fields), "n/a" if missing else fmt.format(value)))
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label:<{width}}  {text:>10}" for label, text in rows)



def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON through a temp file, fsync and rename."""
    text = json.dumps(json_ready(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_text(Path(path), text)
