"""`monosemantic findings concepts OUT`: how often a concept must occur for a dictionary of a
given size to hold a feature for it.

Concepts come from the held-out tokens' decoded text (`concepts`). For every size of a series
(one run per size, the longest-trained), each concept's best feature by F1 of "fires" against
"the concept occurs" on the held-out tokens (`concept_counts`); the concept is *covered* when
that F1 is at least `cover_threshold`. Coverage is then read against the concept's frequency:
the covered share per frequency bin and size, and logistic fits (`logistic`) of covered on
log10 frequency, per size and pooled with log10 F, with the frequency where coverage reaches
50%. Written to OUT/findings/concepts.json and concepts.png.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.findings.concept_counts import BestFeatures, ConceptCounts, Incidence
from monosemantic.findings.concepts import (
    KINDS,
    Concept,
    ConceptOptions,
    build_concepts,
    check_options,
    read_held_text,
)
from monosemantic.findings.holdout import (
    Holdout,
    HoldoutOptions,
    common_holdout,
    encoded_batches,
)
from monosemantic.findings.logistic import fit_logistic, sigmoid
from monosemantic.findings.output import FORMAT_VERSION, findings_dir, publish
from monosemantic.findings.paper import CONCEPTS_NOTE
from monosemantic.findings.plots import plot_concepts
from monosemantic.findings.selection import Series, measure_each, need_sizes, select_series

CONCEPTS_JSON = "concepts.json"
CONCEPTS_PNG = "concepts.png"


@dataclass
class CoverageOptions:
    """When a feature fires, when a concept counts as covered, and the fits."""

    act_threshold: float = 0.0
    """A feature fires on a token when its code is above this."""
    cover_threshold: float = 0.5
    """A concept is covered by a size when its best feature's F1 is at least this."""
    bins_per_decade: int = 2
    """Frequency bins of the coverage curve per factor of 10."""
    ridge: float = 1e-3
    """L2 penalty on the logistic fits' slopes (keeps perfectly separated data finite)."""
    min_fit_concepts: int = 20
    """Refuse to fit with fewer concepts than this."""


@dataclass
class ConceptsConfig:
    """Options of `monosemantic findings concepts`."""

    out: Path = field(metadata={"positional": True})
    """The sweep folder (holds sweep.jsonl); results go to OUT/findings/."""
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions,
                                    metadata={"short_flags": True})
    """The held-out tokens the concepts are defined and measured on (also accepted without
    the `holdout.` prefix)."""
    concepts: ConceptOptions = field(default_factory=ConceptOptions,
                                     metadata={"short_flags": True})
    """Which concepts (also without the `concepts.` prefix)."""
    coverage: CoverageOptions = field(default_factory=CoverageOptions,
                                      metadata={"short_flags": True})
    """Firing, coverage and fits (also without the `coverage.` prefix)."""


DEFINITIONS = {
    "fires": "the feature's code is above act_threshold on the token",
    "precision": "tokens where the concept occurs and the feature fires / tokens it fires on",
    "recall": "tokens where the concept occurs and the feature fires / concept occurrences",
    "best feature": "the feature of highest F1 = 2·precision·recall / (precision + recall)",
    "covered": "the best feature's F1 is at least cover_threshold",
    "frequency": "concept occurrences / measured held-out tokens",
    "fit per size": "logit P(covered) = intercept + slope·log10(frequency)",
    "fit pooled": "logit P(covered) = intercept + a·log10(frequency) + b·log10(F)",
}


def check_coverage(opts: CoverageOptions) -> None:
    if not 0 < opts.cover_threshold <= 1:
        raise UserError(f"--cover-threshold must lie in (0, 1], not {opts.cover_threshold}")
    if opts.bins_per_decade < 1 or opts.ridge < 0 or opts.min_fit_concepts < 2:
        raise UserError("need --bins-per-decade ≥ 1, --ridge ≥ 0 and --min-fit-concepts ≥ 2")


def measure_concepts(cfg: ConceptsConfig) -> dict[str, Any]:
    """The content of concepts.json: every series with 2 or more sizes."""
    check_options(cfg.concepts)
    check_coverage(cfg.coverage)
    all_series = select_series(cfg.out, "longest")
    done, failed = measure_each(all_series, lambda series: _series(series, cfg))
    return {"version": FORMAT_VERSION, "sweep": str(cfg.out), "config": to_dict(cfg),
            "definitions": DEFINITIONS, "note": CONCEPTS_NOTE, "series": done,
            "failed": failed}


def _series(series: Series, cfg: ConceptsConfig) -> dict[str, Any]:
    need_sizes(series, 2, "concept coverage")
    runs = [r.run for r in series.runs]
    holdout = common_holdout(runs, cfg.holdout)
    spec = cfg.concepts.tokenizer or runs[0].model
    tokenizer = _tokenizer(spec)
    text = read_held_text(holdout, lambda t: tokenizer.decode([t]))
    concepts, duplicates = build_concepts(text, cfg.concepts)
    if len(concepts) < cfg.coverage.min_fit_concepts:
        raise UserError(
            f"{series.label}: only {len(concepts)} concepts occur at least "
            f"{cfg.concepts.min_count} times in {holdout.n_tokens:,} held-out tokens; a fit "
            f"needs {cfg.coverage.min_fit_concepts}: measure more tokens (--n-tokens) or lower "
            "--min-count")
    best = _best_features(series, concepts, holdout, cfg)
    sizes = [r.n_features for r in series.runs]
    freq_C = np.array([c.count for c in concepts], dtype=float) / holdout.n_tokens
    covered_SC = np.stack([b.f1_C >= cfg.coverage.cover_threshold for b in best])
    first = series.runs[0].run
    return {"series": series.label, "model": first.model, "hook": first.hook,
            "sizes": sizes, "runs": [r.record.run for r in series.runs],
            "tokens_trained": [r.record.tokens for r in series.runs],
            "holdout": holdout.describe(), "tokenizer": spec,
            "n_concepts": len(concepts), "duplicates_dropped": duplicates,
            "covered_share": [float(c.mean()) for c in covered_SC],
            "by_kind": _by_kind(concepts, covered_SC),
            "curve": binned_curve(freq_C, covered_SC, best, cfg.coverage.bins_per_decade),
            "fits": fit_coverage(freq_C, sizes, covered_SC, cfg.coverage.ridge),
            "concepts": _concept_rows(concepts, freq_C, best)}


def _tokenizer(spec: str) -> Any:
    from monosemantic.models import load_tokenizer

    try:
        return load_tokenizer(spec)
    except UserError as err:
        raise UserError(f"the concepts are read from the decoded tokens, which needs the "
                        f"tokenizer of {spec!r}: {err}; give a model with --tokenizer") from err


def _best_features(series: Series, concepts: list[Concept], holdout: Holdout,
                   cfg: ConceptsConfig) -> list[BestFeatures]:
    from monosemantic.devices import resolve_device

    device = str(resolve_device(cfg.holdout.device))
    saes = [r.run.load_sae(device) for r in series.runs]
    incidence = Incidence(concepts, holdout.n_tokens)
    counts = [ConceptCounts(incidence, sae.cfg.n_features, cfg.coverage.act_threshold)
              for sae in saes]
    for codes in encoded_batches(saes, holdout, cfg.holdout, "concept coverage"):
        for count, code in zip(counts, codes):
            count.update(code)
    return [c.best() for c in counts]


def binned_curve(freq_C: np.ndarray, covered_SC: np.ndarray, best: list[BestFeatures],
                 bins_per_decade: int) -> list[dict[str, Any]]:
    """Per log-spaced frequency bin: its edges, concepts, and per size the covered share and
    mean best F1 (empty bins left out)."""
    log_C = np.log10(freq_C)
    lo = np.floor(log_C.min() * bins_per_decade) / bins_per_decade
    hi = np.ceil(log_C.max() * bins_per_decade) / bins_per_decade
    n_bins = max(1, round((hi - lo) * bins_per_decade))
    edges = lo + np.arange(n_bins + 1) / bins_per_decade
    which_C = np.clip(np.searchsorted(edges, log_C, side="right") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        members = which_C == b
        if not members.any():
            continue
        out.append({"frequency_range": [float(10 ** edges[b]), float(10 ** edges[b + 1])],
                    "frequency_mid": float(10 ** ((edges[b] + edges[b + 1]) / 2)),
                    "n_concepts": int(members.sum()),
                    "covered_share": [float(c[members].mean()) for c in covered_SC],
                    "mean_best_f1": [float(s.f1_C[members].mean()) for s in best]})
    return out


def fit_coverage(freq_C: np.ndarray, sizes: list[int], covered_SC: np.ndarray,
                 ridge: float) -> dict[str, Any]:
    """Per size: covered on log10 frequency; pooled: on log10 frequency and log10 F. Each with
    the frequency at which the fitted coverage is 50% (null when the slope is not positive);
    a fit that cannot be made records its reason under "error"."""
    log_f = np.log10(freq_C)
    span = [float(freq_C.min()), float(freq_C.max())]
    per_size = []
    for size, covered_C in zip(sizes, covered_SC):
        entry: dict[str, Any] = {"n_features": size}
        try:
            fit = fit_logistic(log_f[:, None], covered_C, ("log10_frequency",), ridge)
        except UserError as err:
            per_size.append({**entry, "error": str(err)})
            continue
        b0, b1 = fit.coef
        entry.update(fit.as_dict())
        entry["frequency_at_half"] = _half(-b0, b1, span)
        per_size.append(entry)
    x = np.column_stack([np.tile(log_f, len(sizes)), np.repeat(np.log10(sizes), len(log_f))])
    try:
        pooled_fit = fit_logistic(x, covered_SC.reshape(-1), ("log10_frequency", "log10_F"),
                                  ridge)
        b0, b1, b2 = pooled_fit.coef
        pooled: dict[str, Any] = pooled_fit.as_dict()
        pooled["frequency_at_half"] = [{"n_features": s, **_half(-(b0 + b2 * np.log10(s)), b1,
                                                                  span)} for s in sizes]
    except UserError as err:
        pooled = {"error": str(err)}
    return {"per_size": per_size, "pooled": pooled, "frequency_span": span}


def _half(num: float, slope: float, span: list[float]) -> dict[str, Any]:
    """10^(num / slope), and whether it lies within the measured frequencies."""
    if slope <= 0 or abs(num / slope) > 300:  # no rise, or beyond any float frequency
        return {"frequency": None, "within_measured": False}
    value = float(10 ** (num / slope))
    return {"frequency": value, "within_measured": span[0] <= value <= span[1]}


def fitted_share(fit: dict[str, Any], freq: np.ndarray) -> np.ndarray | None:
    """A per-size fit's coverage at `freq` (None for a fit that failed)."""
    if "error" in fit:
        return None
    c = fit["coefficients"]
    return sigmoid(c["intercept"] + c["log10_frequency"] * np.log10(freq))


def _by_kind(concepts: list[Concept], covered_SC: np.ndarray) -> dict[str, Any]:
    kinds = np.array([c.kind for c in concepts])
    return {k: {"n_concepts": int((kinds == k).sum()),
                "covered_share": [float(c[kinds == k].mean()) for c in covered_SC]}
            for k in KINDS if (kinds == k).any()}


def _concept_rows(concepts: list[Concept], freq_C: np.ndarray,
                  best: list[BestFeatures]) -> list[dict[str, Any]]:
    return [{"name": c.name, "kind": c.kind, "count": c.count, "frequency": float(freq_C[i]),
             "best": [{"feature": int(b.feature_C[i]), "f1": round(float(b.f1_C[i]), 4),
                       "precision": round(float(b.precision_C[i]), 4),
                       "recall": round(float(b.recall_C[i]), 4)} for b in best]}
            for i, c in enumerate(concepts)]


def table_lines(report: dict[str, Any]) -> list[str]:
    """The printed coverage per frequency bin and size, and the fits."""
    cov = report["config"]["coverage"]
    lines = [f"covered: best feature's F1 ≥ {cov['cover_threshold']:g} (fires: code > "
             f"{cov['act_threshold']:g})"]
    for s in report["series"]:
        h = s["holdout"]
        lines.append(f"{s['series']} ({s['model']}, {s['hook']}): {s['n_concepts']:,} concepts "
                     f"on {h['n_tokens']:,} held-out tokens")
        lines.append(f"  {'frequency':<21} {'concepts':>8} " + " ".join(
            f"{'F=' + format(n, ','):>8}" for n in s["sizes"]))
        for b in s["curve"]:
            lo, hi = b["frequency_range"]
            lines.append(f"  {lo:>9.2e}-{hi:<9.2e}  {b['n_concepts']:>8,} " + " ".join(
                f"{v:>8.0%}" for v in b["covered_share"]))
        lines.append(f"  {'all':<21} {s['n_concepts']:>8,} " + " ".join(
            f"{v:>8.0%}" for v in s["covered_share"]))
        lines += ["  " + line for line in fit_lines(s["fits"])]
    for label, message in report["failed"].items():
        lines.append(f"{label}: not measured: {message}")
    return lines


def fit_lines(fits: dict[str, Any]) -> list[str]:
    """The fits in words: slope and 50% frequency per size, then the pooled model."""
    out = []
    for f in fits["per_size"]:
        if "error" in f:
            out.append(f"fit F={f['n_features']:,}: {f['error']}")
            continue
        c = f["coefficients"]
        out.append(f"fit F={f['n_features']:,}: logit = {c['intercept']:.2f} + "
                   f"{c['log10_frequency']:.2f}·log10 freq; 50% at "
                   f"{_freq(f['frequency_at_half'])}")
    p = fits["pooled"]
    if "error" in p:
        return out + [f"pooled fit: {p['error']}"]
    c = p["coefficients"]
    halves = ", ".join(f"F={h['n_features']:,}: {_freq(h)}" for h in p["frequency_at_half"])
    line = (f"pooled: logit = {c['intercept']:.2f} + {c['log10_frequency']:.2f}·log10 freq + "
            f"{c['log10_F']:.2f}·log10 F; 50% at {halves}")
    if c["log10_frequency"] > 0:
        line += (f"; the 50% frequency scales as F^{-c['log10_F'] / c['log10_frequency']:.2f}"
                 " (the paper's rule of thumb: F^-1)")
    return out + [line]


def _freq(half: dict[str, Any]) -> str:
    if half["frequency"] is None:
        return "n/a (no rise with frequency, or beyond 1e±300)"
    note = "" if half["within_measured"] else " (outside the measured frequencies)"
    return f"{half['frequency']:.2e}{note}"


def run_concepts(cfg: ConceptsConfig) -> dict[str, Any]:
    """Measure, write OUT/findings/concepts.json and concepts.png, print the table."""
    report = measure_concepts(cfg)
    publish(findings_dir(cfg.out), CONCEPTS_JSON, CONCEPTS_PNG, report, plot_concepts,
            table_lines(report))
    return report
