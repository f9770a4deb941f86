"""`monosemantic findings dead OUT`: dead and ultra-rare features against dictionary size.

Per run, three fractions of its F features:
- dead (the trainer's): no activation in the last `dead_window_tokens` training tokens, as
  recorded in the sweep table;
- silent: no activation on any of the measured held-out tokens;
- ultra-rare: fired on the held-out tokens, but on fewer than `rare_threshold` of them.
The held-out tokens are the same rows for every run of a series (`holdout`). Written to
OUT/findings/dead.json and dead.png.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.findings.holdout import (
    Holdout,
    HoldoutOptions,
    common_holdout,
    fire_counts,
)
from monosemantic.findings.output import FORMAT_VERSION, findings_dir, percent, publish
from monosemantic.findings.paper import DEAD_CAVEAT, PAPER_DEAD
from monosemantic.findings.plots import plot_dead
from monosemantic.findings.selection import Select, SizeRun, select_series

DEAD_JSON = "dead.json"
DEAD_PNG = "dead.png"


@dataclass
class DeadOptions:
    """What is counted as ultra-rare, and which runs."""

    rare_threshold: float = 1e-4
    """Ultra-rare: fires on the held-out tokens, but on fewer than this fraction of them. The
    default suits CPU-sized measurements (50,000 tokens: fewer than 5 firings); the threshold
    times the tokens measured must be at least 1."""
    select: Select = "longest"
    """Runs measured: the longest-trained run of each size (ties: lowest training loss), or
    all runs of the sweep."""


@dataclass
class DeadConfig:
    """Options of `monosemantic findings dead`."""

    out: Path = field(metadata={"positional": True})
    """The sweep folder (holds sweep.jsonl); results go to OUT/findings/."""
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions,
                                    metadata={"short_flags": True})
    """The held-out tokens measured (also accepted without the `holdout.` prefix)."""
    dead: DeadOptions = field(default_factory=DeadOptions, metadata={"short_flags": True})
    """Ultra-rare threshold and run selection (also without the `dead.` prefix)."""


DEFINITIONS = {
    "dead_fraction": "no activation in the last dead_window_tokens training tokens (trainer)",
    "silent_fraction": "no activation on any of the measured held-out tokens",
    "ultra_rare_fraction": "fires on the held-out tokens, on fewer than rare_threshold of them",
}


def measure_dead(cfg: DeadConfig) -> dict[str, Any]:
    """The content of dead.json: every series of the sweep measured."""
    threshold = cfg.dead.rare_threshold
    if not 0 < threshold < 1:
        raise UserError(f"--rare-threshold must lie between 0 and 1, not {threshold}")
    series_out = []
    for series in select_series(cfg.out, cfg.dead.select):
        holdout = common_holdout([r.run for r in series.runs], cfg.holdout)
        if threshold * holdout.n_tokens < 1:
            raise UserError(
                f"{series.label}: on {holdout.n_tokens:,} held-out tokens a frequency below "
                f"{threshold:g} means never firing: measure more tokens (--n-tokens, at least "
                f"{int(1 / threshold):,}) or raise --rare-threshold")
        points = [_point(r, holdout, cfg.holdout, threshold) for r in series.runs]
        series_out.append({"series": series.label, "holdout": holdout.describe(),
                           "rare_threshold": threshold, "points": points})
    return {"version": FORMAT_VERSION, "sweep": str(cfg.out), "config": to_dict(cfg),
            "definitions": DEFINITIONS, "paper": [
                {"n_features": n, "dead_fraction": f, "quoted": q} for n, f, q in PAPER_DEAD],
            "caveat": DEAD_CAVEAT, "series": series_out}


def _point(size_run: SizeRun, holdout: Holdout, hopts: HoldoutOptions,
           threshold: float) -> dict[str, Any]:
    record = size_run.record
    sae = size_run.run.load_sae(_device(hopts))
    counts = fire_counts(sae, holdout, hopts, f"{record.run}")
    n_feat = len(counts)
    rare = (counts > 0) & (counts < threshold * holdout.n_tokens)
    return {"run": record.run, "n_features": record.n_features, "tokens": record.tokens,
            "lr": record.lr, "dead_fraction": record.dead_fraction,
            "dead_window_tokens": record.dead_window_tokens,
            "silent_fraction": float((counts == 0).sum()) / n_feat,
            "ultra_rare_fraction": float(rare.sum()) / n_feat,
            "n_silent": int((counts == 0).sum()), "n_ultra_rare": int(rare.sum())}


def _device(hopts: HoldoutOptions) -> str:
    from monosemantic.devices import resolve_device

    return str(resolve_device(hopts.device))


def table_lines(report: dict[str, Any]) -> list[str]:
    """The printed table of each series, then the paper's figures and the caveat."""
    lines = []
    for s in report["series"]:
        h = s["holdout"]
        lines.append(f"{s['series']}: {h['n_tokens']:,} held-out tokens (store rows "
                     f"{h['rows'][0]:,}-{h['rows'][1]:,}), ultra-rare below "
                     f"{s['rare_threshold']:g}")
        lines.append(f"  {'run':<22} {'F':>10} {'tokens':>12} {'dead':>8} {'window':>10} "
                     f"{'silent':>8} {'ultra-rare':>10}")
        for p in s["points"]:
            lines.append(f"  {p['run']:<22} {p['n_features']:>10,} {p['tokens']:>12,} "
                         f"{percent(p['dead_fraction']):>8} "
                         f"{_count(p['dead_window_tokens']):>10} "
                         f"{percent(p['silent_fraction']):>8} "
                         f"{percent(p['ultra_rare_fraction']):>10}")
        for p in report["paper"]:
            lines.append(f"  {'paper (' + p['quoted'] + ')':<22} {p['n_features']:>10,} "
                         f"{'':>12} {percent(p['dead_fraction']):>8}")
    lines.append(report["caveat"])
    return lines



def _count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def run_dead(cfg: DeadConfig) -> dict[str, Any]:
    """Measure, write OUT/findings/dead.json and dead.png, print the table."""
    report = measure_dead(cfg)
    publish(findings_dir(cfg.out), DEAD_JSON, DEAD_PNG, report, plot_dead, table_lines(report))
    return report
