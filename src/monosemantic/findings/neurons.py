"""`monosemantic findings neurons OUT_OR_RUN`: features against the model's MLP neurons.

Per run, every feature's largest |Pearson r| with any MLP neuron of its layer, and as the
baseline every neuron's largest |r| with another neuron of that layer (`neuron_corr`). On a
sweep folder every series is measured on its common held-out rows (`holdout`), each selected
run (by default the longest-trained of each size) from one forward per batch; on a run
folder, that run on its store's `--rows`. Written to OUT/findings/neurons.json and
neurons.png (a run's to RUN/findings/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monosemantic.activations.reader import ActivationStore
from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.findings.holdout import Holdout, HoldoutOptions, common_holdout
from monosemantic.findings.neuron_corr import (
    MIN_FIRES,
    WEAK_R,
    NeuronCorrelations,
    Rows,
    measure_store,
    run_rows,
)
from monosemantic.findings.output import FORMAT_VERSION, findings_dir, percent, publish
from monosemantic.findings.paper import NEURONS_NOTE
from monosemantic.findings.plots import plot_neurons
from monosemantic.findings.replay import replay_settings
from monosemantic.findings.selection import Select, select_series
from monosemantic.runs import RunDir
from monosemantic.sweep.record import SWEEP_TABLE

NEURONS_JSON = "neurons.json"
NEURONS_PNG = "neurons.png"
REPLAY_WARN = 0.02
"""Relative error of the replayed rows above which the output warns (float16 storage alone
gives ~1e-3)."""


@dataclass
class NeuronOptions:
    """What counts as a weak correlation, which neurons, which rows."""

    weak_r: float = WEAK_R
    """A feature correlates weakly with the neurons when its max |r| with every neuron is below
    this (the paper's 0.3)."""
    mlp_layer: int | None = None
    """Layer of the MLP neurons (blocks.L.mlp.hook_post) compared with (default: the layer
    whose MLP the hook has seen last: resid_post/mlp_out L -> L, resid_pre/attn_out L -> L-1)."""
    rows: Rows = "holdout"
    """For a run folder: the store rows measured (its held-out rows, its training rows, all);
    a sweep always uses the rows every run held out."""


@dataclass
class NeuronFindingsConfig:
    """Options of `monosemantic findings neurons`."""

    out: Path = field(metadata={"positional": True})
    """A sweep folder (holds sweep.jsonl; results go to OUT/findings/) or one run's folder
    (results go to RUN/findings/)."""
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions,
                                    metadata={"short_flags": True})
    """The tokens measured (also accepted without the `holdout.` prefix); the rows come one
    forward at a time, --batch-rows is not used."""
    neurons: NeuronOptions = field(default_factory=NeuronOptions,
                                   metadata={"short_flags": True})
    """Threshold, MLP layer and rows (also without the `neurons.` prefix)."""
    select: Select = "longest"
    """Runs of a sweep measured: the longest-trained run of each size, or all runs."""


DEFINITIONS = {
    "feature_max_abs_r": "per feature, its largest |Pearson r| with any MLP neuron of the "
                         "layer over the measured tokens",
    "neuron_max_abs_r": "per neuron, its largest |Pearson r| with another neuron of the layer",
    "share_weak": "share of the measured features (neurons) whose max |r| is below weak_r",
    "silent": "features that never fired on the measured tokens (no correlation; excluded)",
    "rare": f"measured features that fired on fewer than {MIN_FIRES} tokens (min_fires; their "
            "r rests on a few tokens; the *_common figures leave them out)",
    "constant": "features that fired with one constant value, neurons that never varied "
                "(no correlation; excluded)",
}


def measure_neurons(cfg: NeuronFindingsConfig) -> dict[str, Any]:
    """The content of neurons.json for a sweep or a run folder."""
    if not 0 < cfg.neurons.weak_r < 1:
        raise UserError(f"--weak-r must lie between 0 and 1, not {cfg.neurons.weak_r}")
    if cfg.holdout.n_tokens <= 0:
        raise UserError(f"--n-tokens must be positive, not {cfg.holdout.n_tokens}")
    source = Path(cfg.out)
    is_sweep = (source / SWEEP_TABLE).is_file()
    series = _sweep_series(cfg) if is_sweep else [_run_series(cfg)]
    return {"version": FORMAT_VERSION, "source": str(source),
            "kind": "sweep" if is_sweep else "run", "config": to_dict(cfg),
            "definitions": DEFINITIONS, "note": NEURONS_NOTE, "series": series}


def _sweep_series(cfg: NeuronFindingsConfig) -> list[dict[str, Any]]:
    out = []
    for series in select_series(cfg.out, cfg.select):
        runs = [r.run for r in series.runs]
        holdout = common_holdout(runs, cfg.holdout)
        results = _measure(runs, holdout.store, holdout.rows, cfg, series.label)
        points = [{"run": r.record.run, "n_features": r.record.n_features,
                   "tokens": r.record.tokens, **_point(res)}
                  for r, res in zip(series.runs, results)]
        out.append(_series(series.label, holdout.describe(), results[0], points))
    return out


def _run_series(cfg: NeuronFindingsConfig) -> dict[str, Any]:
    run = RunDir.open(cfg.out)
    store = run.store(cfg.holdout.store, alternative="give the store with --store")
    rows = run_rows(run, store, cfg.neurons.rows, cfg.holdout.n_tokens)
    (result,) = _measure([run], store, rows, cfg, run.name)
    tokens = run.training.get("tokens")
    point = {"run": run.name, "n_features": run.n_features, "tokens": tokens, **_point(result)}
    described = Holdout(store, rows, cfg.holdout.n_tokens).describe()
    return _series(run.name, {**described, "which": cfg.neurons.rows}, result, [point])


def _measure(runs: list[RunDir], store: ActivationStore, rows: range, cfg: NeuronFindingsConfig,
             label: str) -> list[NeuronCorrelations]:
    from monosemantic.devices import resolve_device

    replay_settings(store)  # a store that cannot be replayed is refused before the model loads
    device = str(resolve_device(cfg.holdout.device))
    lm = runs[0].load_model(device, dtype=replay_settings(store).torch_dtype)
    saes = [run.load_sae(device) for run in runs]
    return measure_store(lm, saes, runs[0].hook, store, rows, cfg.neurons.mlp_layer,
                         cfg.neurons.weak_r, desc=f"{label}: features vs neurons")


def _point(result: NeuronCorrelations) -> dict[str, Any]:
    return {**result.feature_summary(), "per_feature": result.per_feature()}


def _series(label: str, tokens: dict[str, Any], first: NeuronCorrelations,
            points: list[dict[str, Any]]) -> dict[str, Any]:
    return {"series": label, "holdout": tokens, "hook": first.hook, "mlp_hook": first.mlp_hook,
            "n_tokens": first.n_tokens, "weak_r": first.weak_r, "replay": first.replay,
            "neurons": {**first.neuron_summary(),
                        "max_abs_r": [None if v != v else round(float(v), 4)
                                      for v in first.neurons.max_abs_r]},
            "points": points}


def output_dir(cfg: NeuronFindingsConfig) -> Path:
    return findings_dir(Path(cfg.out))


def table_lines(report: dict[str, Any]) -> list[str]:
    """The printed table of each series."""
    lines = []
    for s in report["series"]:
        h, nrn = s["holdout"], s["neurons"]
        lines.append(f"{s['series']}: {s['hook']} against {s['mlp_hook']} "
                     f"({nrn['n_neurons']:,} neurons), {s['n_tokens']:,} tokens (store rows "
                     f"{h['rows'][0]:,}-{h['rows'][1]:,}); weak: max |r| < {s['weak_r']:g}")
        lines.append(f"  {replay_line(s['replay'])}")
        lines.append(f"  {'run':<22} {'F':>8} {'measured':>9} {'silent':>7} {'const':>6} "
                     f"{'weak':>7} {'median':>7} {'p90':>6} {'rare':>6} {'weak*':>7} "
                     f"{'median*':>7}")
        for p in s["points"]:
            lines.append(f"  {p['run']:<22} {p['n_features']:>8,} {p['features_measured']:>9,} "
                         f"{p['features_silent']:>7,} {p['features_constant']:>6,} "
                         f"{percent(p['feature_share_weak']):>7} "
                         f"{_num(p['feature_median_max_abs_r']):>7} "
                         f"{_num(p['feature_p90_max_abs_r']):>6} {p['features_rare']:>6,} "
                         f"{percent(p['feature_share_weak_common']):>7} "
                         f"{_num(p['feature_median_max_abs_r_common']):>7}")
        lines.append(f"  {'neurons vs neurons':<22} {nrn['n_neurons']:>8,} "
                     f"{nrn['neurons_measured']:>9,} {'':>7} {nrn['neurons_constant']:>6,} "
                     f"{percent(nrn['neuron_share_weak']):>7} "
                     f"{_num(nrn['neuron_median_max_abs_r']):>7} "
                     f"{_num(nrn['neuron_p90_max_abs_r']):>6}")
    lines.append("* without the rare features (fired on fewer than "
                 f"{report['series'][0]['points'][0]['min_fires']} tokens)")
    lines.append(report["note"])
    return lines


def replay_line(replay: dict[str, Any] | None) -> str:
    """What the replay of the store's rows reproduced, in words."""
    if replay is None:
        return "tokens given by the caller"
    text = (f"the model run again over the store's contexts reproduces its rows within "
            f"{replay['rel_error']:.1e} relative error (largest row {replay['max_row_error']:.1e})")
    if replay["placeholders"]:
        text += (f"; {replay['placeholders']:,} special tokens inside texts (not stored) were "
                 "replaced by a BOS")
    if replay["rel_error"] > REPLAY_WARN:
        text += f". WARNING: above {REPLAY_WARN:g}, the contexts differ from the harvest's"
    return text



def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run_neurons(cfg: NeuronFindingsConfig) -> dict[str, Any]:
    """Measure, write OUT/findings/neurons.json and neurons.png, print the table."""
    report = measure_neurons(cfg)
    publish(output_dir(cfg), NEURONS_JSON, NEURONS_PNG, report, plot_neurons,
            table_lines(report))
    return report
