"""`monosemantic plan --compute C`: the compute-optimal dictionary size, training tokens (and
steps), learning rate and predicted loss at a budget, read from a sweep's scaling.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.laws.bootstrap import percentiles
from monosemantic.laws.lr import at_grid_edge, edge_text
from monosemantic.laws.parametric import ParametricLaw
from monosemantic.laws.plots import slug
from monosemantic.laws.powerlaw import PowerLaw
from monosemantic.laws.scaling_cli import FORMAT_VERSION, SCALING_JSON


@dataclass
class PlanConfig:
    """Options of `monosemantic plan`."""

    compute: float
    """Training budget in FLOPs, counted as the sweep counted it (its flops formula)."""
    fit: Path | None = None
    """Sweep folder holding scaling.json (or the file itself); default: the current folder."""
    group: str | None = None
    """Which fitted group (architecture, sparsity, width) to plan for, by label or file slug;
    needed when the fit has several."""
    batch_size: int | None = None
    """Tokens per optimizer step, to turn tokens into steps (default: the sweep's)."""


def load_fit(path: Path | None) -> tuple[Path, dict[str, Any]]:
    """The scaling.json at `path` (a folder or the file), or a UserError saying how to make
    one."""
    where = Path(".") if path is None else Path(path)
    file = where if where.is_file() else where / SCALING_JSON
    if not file.is_file():
        made = ("`monosemantic sweep OUT ...`, then `monosemantic scaling OUT`, then pass "
                "--fit OUT")
        if path is None:
            raise UserError(f"no scaling fit in the current folder (./{SCALING_JSON}) and no "
                            f"--fit given: make one with {made}")
        raise UserError(f"{file} does not exist: make it with {made}")
    try:
        report = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{file} is not valid JSON ({err}): rerun `monosemantic scaling`") from err
    if report.get("version") != FORMAT_VERSION or not report.get("groups"):
        raise UserError(f"{file} is not a scaling fit this version reads: rerun "
                        "`monosemantic scaling` on the sweep folder")
    return file, report


def pick_group(report: dict[str, Any], name: str | None) -> dict[str, Any]:
    groups = report["groups"]
    labels = [g["group"] for g in groups]
    if name is None:
        if len(groups) == 1:
            return groups[0]
        raise UserError(f"the fit has {len(groups)} groups; choose one with --group: "
                        + "; ".join(repr(label) for label in labels))
    for g in groups:
        if name in (g["group"], slug(g["group"])):
            return g
    raise UserError(f"no group {name!r} in the fit; it has: "
                    + "; ".join(repr(label) for label in labels))


def _at(law: dict[str, Any], c: float, confidence: float) -> tuple[float, list[float] | None]:
    """A power-law record of scaling.json at compute c, with its bootstrap interval."""
    value = float(PowerLaw(law["log10_coef"], law["exponent"], law["offset"])(c))
    draws = [float(PowerLaw.from_params(p)(c)) for p in law["draws"]]
    if not draws:
        return value, None
    lo, hi = np.percentile(draws, percentiles(confidence))
    return value, [float(lo), float(hi)]


def plan(cfg: PlanConfig) -> dict[str, Any]:
    """The recommendation as a dict (what `run_plan` prints)."""
    if not (math.isfinite(cfg.compute) and cfg.compute > 0):
        raise UserError(f"--compute must be a positive number of FLOPs, not {cfg.compute}")
    file, report = load_fit(cfg.fit)
    group = pick_group(report, cfg.group)
    conf = group["bootstrap"]["confidence"]
    c = cfg.compute
    n_features, f_iv = _at(group["features"], c, conf)
    tokens, d_iv = _at(group["tokens"], c, conf)
    loss, loss_iv = _at(group["loss"], c, conf)
    batch = cfg.batch_size or group["batch_size"]
    if batch <= 0:
        raise UserError("--batch-size must be positive")
    out: dict[str, Any] = {
        "fit": str(file), "group": group["group"], "metric": group["metric"],
        "method": group["method"], "compute": c, "confidence": conf,
        "n_features": round(n_features), "n_features_interval": f_iv,
        "tokens": round(tokens), "tokens_interval": d_iv,
        "batch_size": batch, "steps": math.ceil(tokens / batch),
        "loss": loss, "loss_interval": loss_iv,
        "extrapolation": c / group["compute_range"][1],
        "compute_range": group["compute_range"],
    }
    lr = group.get("lr")
    if lr and "exponent" in lr:
        out["lr"], out["lr_interval"] = _at(lr, c, conf)
        if lr.get("interval_note"):
            out["lr_interval"] = None  # zero width by construction, not a measurement
        out["lr_note"] = _lr_note(lr)
    par = group.get("parametric")
    if par:
        names = ("E", "log10_A", "alpha", "log10_B", "beta")
        law = ParametricLaw(*(par[n] for n in names))
        out["parametric_loss"] = float(law(n_features, tokens))
        draws = [float(ParametricLaw.from_params(p)(n_features, tokens)) for p in par["draws"]]
        out["parametric_loss_interval"] = (
            [float(v) for v in np.percentile(draws, percentiles(conf))] if draws else None)
    out["plan_memory"] = memory_command(group, out["n_features"], batch)
    return out


def _lr_note(lr: dict[str, Any]) -> str | None:
    """Why the planned lr is not a precise prediction, when it is not."""
    notes = []
    if at_grid_edge(lr):
        notes.append(f"at the edge of the grid ({edge_text(lr['edge'])}): the optimum may lie "
                     "beyond the lrs tried; widen --lr")
    if lr.get("interval_note"):
        notes.append(f"interval {lr['interval_note']}")
    return "; ".join(notes) or None


def memory_command(group: dict[str, Any], n_features: int, batch: int) -> str:
    """The `monosemantic plan-memory` line for the recommended size (its architectures are
    relu and topk: batchtopk and matryoshka plan as topk, jumprelu as relu)."""
    topk = group["architecture"] in ("topk", "batchtopk", "matryoshka")
    cmd = (f"monosemantic plan-memory --d-in {group['d_in']} --n-features {n_features} "
           f"--batch-size {batch} --architecture {'topk' if topk else 'relu'}")
    k = group["sparsity"].get("k")
    if topk and k is not None:
        cmd += f" --k {int(k)}"
    return cmd


def _iv(values: list[float] | None, fmt: str) -> str:
    return "" if values is None else f"  [{format(values[0], fmt)} to {format(values[1], fmt)}]"


def run_plan(cfg: PlanConfig) -> dict[str, Any]:
    """Print the recommendation for `cfg.compute`."""
    p = plan(cfg)
    pct = f"{p['confidence']:.0%} interval in brackets"
    lines = [f"plan for {p['compute']:.3g} FLOPs: group {p['group']}, metric {p['metric']}, "
             f"method {p['method']} (fit {p['fit']}; {pct})",
             f"  n_features      {p['n_features']:>16,}{_iv(p['n_features_interval'], ',.0f')}",
             f"  tokens          {p['tokens']:>16,}{_iv(p['tokens_interval'], ',.0f')}",
             f"  steps           {p['steps']:>16,}  at batch size {p['batch_size']:,}"]
    if "lr" in p:
        lines.append(f"  lr              {p['lr']:>16.3g}{_iv(p['lr_interval'], '.3g')}")
        if p["lr_note"]:
            lines.append(f"  lr note: {p['lr_note']}")
    lines.append(f"  predicted loss  {p['loss']:>16.5g}{_iv(p['loss_interval'], '.5g')}"
                 "  (frontier law)")
    if "parametric_loss" in p:
        lines.append(f"  L(F, D) there   {p['parametric_loss']:>16.5g}"
                     f"{_iv(p['parametric_loss_interval'], '.5g')}  (parametric law)")
    ratio = p["extrapolation"]
    if ratio > 1:
        lines.append(f"  note: {ratio:,.3g}x the sweep's largest compute; the intervals assume "
                     "the laws hold that far out")
    elif p["compute"] < p["compute_range"][0]:
        lines.append("  note: below the sweep's smallest compute; the laws were not fitted there")
    lines.append(f"memory per GPU: {p['plan_memory']}")
    say("\n".join(lines))
    return p
