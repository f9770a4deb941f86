"""`monosemantic findings splitting OUT`: feature splitting across the sizes of a sweep.

For each pair of sizes of a series (consecutive by default), every feature of the larger SAE
is matched to its most similar feature of the smaller one, by decoder cosine and by
activation correlation on the same held-out tokens (`pairs`), and both sides are classified
(`matching`: split, persist, drift, vanish; appear). Family trees follow each feature of the
smallest size through the sizes (`families`). Written to OUT/findings/splitting.json,
splitting.png and splitting.html (a self-contained family view, no server).

One run per size: the longest-trained (`selection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.findings.families import family_trees, top_tokens
from monosemantic.findings.holdout import HoldoutOptions, common_holdout
from monosemantic.findings.matching import LARGE_CLASSES, SMALL_CLASSES, nearest_twin_cosines
from monosemantic.findings.output import FORMAT_VERSION, findings_dir, percent, write_json
from monosemantic.findings.page import write_family_page
from monosemantic.findings.pairs import (
    MEASURES,
    MatchOptions,
    PairResult,
    check_options,
    match_pairs,
    size_pairs,
)
from monosemantic.findings.paper import SPLITTING_NOTE
from monosemantic.findings.plots import plot_splitting
from monosemantic.findings.selection import Series, measure_each, need_sizes, select_series

if TYPE_CHECKING:
    from monosemantic.sae import SAE

SPLITTING_JSON = "splitting.json"
SPLITTING_PNG = "splitting.png"
SPLITTING_HTML = "splitting.html"


@dataclass
class TreeOptions:
    """The family trees."""

    family_by: Literal["decoder", "activation"] = "decoder"
    """Similarity that links a feature to its parent in the family trees."""
    max_html_trees: int = 300
    """Family trees shown in splitting.html (the largest families first); the JSON has all."""


@dataclass
class SplittingConfig:
    """Options of `monosemantic findings splitting`."""

    out: Path = field(metadata={"positional": True})
    """The sweep folder (holds sweep.jsonl); results go to OUT/findings/."""
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions,
                                    metadata={"short_flags": True})
    """The held-out tokens the correlations are measured on (also accepted without the
    `holdout.` prefix)."""
    match: MatchOptions = field(default_factory=MatchOptions, metadata={"short_flags": True})
    """Matching and classification (also without the `match.` prefix)."""
    trees: TreeOptions = field(default_factory=TreeOptions, metadata={"short_flags": True})
    """Family trees (also without the `trees.` prefix)."""


DEFINITIONS = {
    "parent": "the smaller-SAE feature most similar to a larger-SAE feature",
    "child": "a larger-SAE feature whose parent has similarity >= child_threshold",
    **{f"small.{c}": d for c, d in zip(SMALL_CLASSES, (
        "2 or more children", "one child, similarity >= persist_threshold",
        "one child, similarity in [child_threshold, persist_threshold)", "no child"))},
    **{f"large.{c}": d for c, d in zip(LARGE_CLASSES, (
        "no parent with similarity >= child_threshold", "child of a splitting feature",
        "child of a persisting feature", "child of a drifting feature"))},
    "decoder_twin_cosine": "per run, the median over its firing features of the largest "
                           "decoder cosine to another firing feature of the same SAE",
    "population": "features that fire on at least one measured token (silent ones are counted "
                  "apart)",
}


def measure_splitting(cfg: SplittingConfig) -> dict[str, Any]:
    """The content of splitting.json: every series with 2 or more sizes."""
    if cfg.trees.max_html_trees < 0:
        raise UserError("--max-html-trees must be 0 or more")
    check_options(cfg.match)
    all_series = select_series(cfg.out, "longest")
    done, failed = measure_each(all_series, lambda series: _series(series, cfg))
    return {"version": FORMAT_VERSION, "sweep": str(cfg.out), "config": to_dict(cfg),
            "definitions": DEFINITIONS, "note": SPLITTING_NOTE, "series": done,
            "failed": failed}


def _series(series: Series, cfg: SplittingConfig) -> dict[str, Any]:
    need_sizes(series, 2, "feature splitting")
    runs = [r.run for r in series.runs]
    names = [r.record.run for r in series.runs]
    sizes = [r.n_features for r in series.runs]
    holdout = common_holdout(runs, cfg.holdout)
    from monosemantic.devices import resolve_device

    device = str(resolve_device(cfg.holdout.device))
    saes = [run.load_sae(device) for run in runs]
    pairs = size_pairs(len(saes), cfg.match.pairs)  # "all" includes the consecutive ones
    results = match_pairs(saes, pairs, holdout, cfg.holdout, cfg.match)
    chain = [r for r in results if r.large == r.small + 1]
    tokens = [top_tokens(run) for run in runs]
    trees = family_trees(chain, names, holdout.n_tokens, cfg.trees.family_by, tokens)
    summaries = [r.summary(sizes, names) for r in results]
    twins = _twin_medians(saes, results)
    return {"series": series.label, "sizes": sizes, "runs": names,
            "holdout": holdout.describe(),
            "feature_databases": [t is not None for t in tokens],
            "decoder_twin_cosine": twins,
            "pairs": summaries,
            "warnings": _warnings(summaries, series) + twin_warnings(names, twins),
            "families": {"by": cfg.trees.family_by, "trees": trees}}


def _twin_medians(saes: list[SAE], results: list[PairResult]) -> list[float | None]:
    """Per run, the median over its firing features of `nearest_twin_cosines` (None with
    fewer than 2 firing)."""
    alive: dict[int, np.ndarray] = {}
    for r in results:
        alive[r.small], alive[r.large] = r.fires_S > 0, r.fires_L > 0
    medians: list[float | None] = []
    for i, sae in enumerate(saes):
        cos = nearest_twin_cosines(sae.W_dec_FD.detach().float().cpu(), alive[i])
        medians.append(float(np.median(cos)) if len(cos) else None)
    return medians


SAME_INDEX_WARNING = 0.5
"""Above this share of children keeping their parent's index, the output warns."""


def _warnings(pairs: list[dict[str, Any]], series: Series) -> list[str]:
    shares = [v for p in pairs for v in p["same_index"].values() if v is not None]
    seeds = {r.record.seed for r in series.runs}
    if not shares or max(shares) <= SAME_INDEX_WARNING:
        return []
    return [f"up to {max(shares):.0%} of the children keep their parent's feature index "
            f"(seeds of the runs: {sorted(seeds)}): the sizes most likely started from the "
            "same initial directions, so 'persist' partly measures the shared start rather "
            "than the learned features; train longer, or the sizes with different seeds, to "
            "tell them apart"]


TWIN_WARNING = 0.9
"""Above this median nearest-twin decoder cosine of a run, the output warns."""


def twin_warnings(names: list[str], twins: list[float | None]) -> list[str]:
    """A warning naming the runs whose median firing feature has a near copy in its own
    dictionary: the matching then pairs features through the shared directions."""
    high = [f"{n} ({t:.2f})" for n, t in zip(names, twins) if t is not None and t > TWIN_WARNING]
    if not high:
        return []
    return [f"in {', '.join(high)} the median firing feature's nearest other decoder row has "
            f"a cosine above {TWIN_WARNING:g}: those dictionaries hold many copies of few "
            "directions (not yet trained apart), so nearly every larger-SAE feature finds a "
            "parent among the copies and 'split' and 'persist' describe that collapse more "
            "than feature splitting; train longer before reading these shares"]


def table_lines(report: dict[str, Any]) -> list[str]:
    """The printed shares of each pair and measure."""
    lines = []
    thresholds = report["config"]["match"]
    lines.append(f"thresholds: child {thresholds['child_threshold']:g}, persist "
                 f"{thresholds['persist_threshold']:g}")
    for s in report["series"]:
        lines.append(f"{s['series']}: sizes {', '.join(f'{n:,}' for n in s['sizes'])}; "
                     f"{s['holdout']['n_tokens']:,} held-out tokens")
        lines.append(f"  {'pair':<18} {'measure':<11} {'split':>7} {'persist':>8} "
                     f"{'drift':>7} {'vanish':>7} | {'appear':>7}   children with their parent's "
                     "index")
        for p in s["pairs"]:
            label = f"{p['small']['n_features']:,}→{p['large']['n_features']:,}"
            for m in MEASURES:
                small, large = p["by"][m]["small"]["shares"], p["by"][m]["large"]["shares"]
                lines.append(f"  {label:<18} {m:<11} " + " ".join(
                    f"{percent(small[c]):>{w}}" for c, w in zip(SMALL_CLASSES, (7, 8, 7, 7)))
                    + f" | {percent(large['appear']):>7}   {percent(p['same_index'][m])}")
        lines += [f"  warning: {w}" for w in s["warnings"]]
    for label, message in report["failed"].items():
        lines.append(f"{label}: not measured: {message}")
    lines.append(report["note"])
    return lines



def run_splitting(cfg: SplittingConfig) -> dict[str, Any]:
    """Measure, write OUT/findings/splitting.json, .png and .html, print the shares."""
    report = measure_splitting(cfg)
    folder = findings_dir(cfg.out)
    path = write_json(folder / SPLITTING_JSON, report)
    png = plot_splitting(report, folder / SPLITTING_PNG)
    page = write_family_page(folder / SPLITTING_HTML, report, png, cfg.trees.max_html_trees)
    say("\n".join(table_lines(report)))
    say(f"wrote {path}")
    say(f"wrote {page} (open it in a browser; no server needed)")
    say(f"wrote {png}" if png else "no PNG: matplotlib is not installed")
    return report
