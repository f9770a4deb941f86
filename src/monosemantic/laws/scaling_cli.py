"""`monosemantic scaling OUT`: fit the scaling laws of a sweep, write OUT/scaling.json, one
PNG per group and OUT/scaling.html, and print the exponents beside the paper's findings."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.laws.findings import PAPER_NOTE, findings_rows
from monosemantic.laws.fit import fit_group
from monosemantic.laws.lr import edge_cell_lines
from monosemantic.laws.page import write_page
from monosemantic.laws.plots import plot_group, slug
from monosemantic.laws.points import group_records
from monosemantic.sweep.record import read_sweep

SCALING_JSON = "scaling.json"
SCALING_HTML = "scaling.html"
FORMAT_VERSION = 1


@dataclass
class ScalingConfig:
    """Options of `monosemantic scaling`."""

    out: Path = field(metadata={"positional": True})
    """The sweep's output folder (holds sweep.jsonl); the fits are written there."""
    metric: str = "train_loss"
    """Loss to fit: train_loss (the training objective, all terms), fvu (1 − held-out
    variance explained), or any key of the records' train_loss_terms, e.g. mse."""
    method: Literal["parametric", "envelope"] = "parametric"
    """How the compute-optimal features and tokens are found: parametric fits
    L(F, D) = E + A·F^−α + B·D^−β to every run and derives the optimum under C = k·F·D
    (suits a coarse grid); envelope fits power laws to the sizes and tokens of the frontier
    runs (needs a dense grid)."""
    irreducible: Literal["auto", "yes", "no"] = "auto"
    """Irreducible term E in the frontier law L(C) = E + a·C^−b: auto keeps it only with 5 or
    more frontier runs when it lowers AICc by more than 2; yes always; no never."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of the runs (0: no intervals)."""
    confidence: float = 0.95
    """Central coverage of the percentile intervals (0.95: percentiles 2.5 and 97.5)."""
    seed: int = 0
    """Seed of the bootstrap's resampling."""


def fit_sweep(cfg: ScalingConfig) -> dict[str, Any]:
    """The content of scaling.json: every group fitted (or its error, when others fit)."""
    if not 0 < cfg.confidence < 1:
        raise UserError(f"--confidence must lie between 0 and 1, not {cfg.confidence}")
    if cfg.n_bootstrap < 0:
        raise UserError("--n-bootstrap must be 0 or more")
    groups = group_records(read_sweep(cfg.out), cfg.metric)
    fitted, failed = [], {}
    for group in groups:
        try:
            fitted.append(fit_group(group, cfg.metric, cfg.method, cfg.irreducible,
                                    cfg.n_bootstrap, cfg.confidence, cfg.seed))
        except UserError as err:
            if len(groups) == 1:
                raise
            failed[group.label] = str(err)
    if not fitted:
        raise UserError("no group could be fitted:\n" + "\n".join(failed.values()))
    return {"version": FORMAT_VERSION, "sweep": str(cfg.out), "metric": cfg.metric,
            "method": cfg.method, "config": to_dict(cfg), "groups": fitted, "failed": failed}


def write_fit(out: Path, report: dict[str, Any]) -> Path:
    """Write `report` to out/scaling.json (through a temporary file); returns the path."""
    path = Path(out) / SCALING_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)
    return path


def run_scaling(cfg: ScalingConfig) -> dict[str, Any]:
    """Fit, write scaling.json, the figures and the page, print the summary."""
    report = fit_sweep(cfg)
    out = Path(cfg.out)
    json_path = write_fit(out, report)
    figures = {g["group"]: plot_group(g, out / f"scaling-{slug(g['group'])}.png")
               for g in report["groups"]}
    page = write_page(out / SCALING_HTML, report, figures)
    for group in report["groups"]:
        say("\n".join(summary_lines(group)))
    for label, message in report["failed"].items():
        say(f"{label}: not fitted: {message}")
    say(PAPER_NOTE)
    say(f"wrote {json_path}")
    say(f"wrote {page} (open it in a browser; figures inlined)")
    for path in figures.values():
        if path is not None:
            say(f"wrote {path}")
    if not any(figures.values()):
        say("no PNG figures: matplotlib is not installed (pip install 'monosemantic[plots]')")
    top = max(g["compute_range"][1] for g in report["groups"])
    say(f"next: monosemantic plan --compute {next_compute(top)} --fit {shlex.quote(str(out))}")
    return report


def next_compute(top: float) -> str:
    """A round budget ten times the sweep's largest, written as the CLI reads it (1e15)."""
    return f"1e{math.ceil(math.log10(top)) + 1}"


def summary_lines(group: dict[str, Any]) -> list[str]:
    """The printed report of one group: its runs, then each law beside the paper's shape."""
    lo, hi = group["compute_range"]
    n_front = sum(p["frontier"] for p in group["points"])
    conf = group["bootstrap"]["confidence"]
    lines = [f"{group['group']}: {group['n_runs']} runs, {n_front} on the frontier, compute "
             f"{lo:.3g} to {hi:.3g} FLOPs; metric {group['metric']}, method {group['method']}"]
    for name, formula, exponent, iv, paper in findings_rows(group):
        lines.append(f"  {name:<21} {formula}")
        lines.append(f"  {'':<21} exponent {exponent} {conf:.0%} {iv}   paper: {paper}")
    lines.append(f"  loss offset: {group['loss']['irreducible']}")
    lr = group.get("lr")
    if lr and "note" in lr:
        lines.append(f"  optimal lr: {lr['note']}")
    if lr:
        lines += [f"    {line}" for line in edge_cell_lines(lr)]
    lines += [f"  warning: {w}" for w in group["warnings"]]
    return lines
