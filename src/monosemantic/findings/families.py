"""Family trees: each feature of the smallest SAE with its descendants through the sizes.

A feature's children in the next size are the features whose parent it is (by the chosen
measure, similarity ≥ the child threshold; see `matching`); the tree follows consecutive sizes
only. Features that appear at a larger size (no parent) are not in any tree; their number is
in the pair shares.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from monosemantic.featuredb.reader import FeatureDB, FeatureDBError
from monosemantic.findings.matching import SMALL_CLASSES
from monosemantic.findings.pairs import PairResult
from monosemantic.runs import RunDir


def top_tokens(run: RunDir, n_tokens: int = 3) -> dict[int, list[str]] | None:
    """Per feature, the tokens its top examples peak on most often (then by activation), from
    the run's features.sqlite (`monosemantic analyze`); None without a usable one."""
    try:
        with FeatureDB(run.db_path) as db:
            if db.n_features != run.n_features:
                return None
            peaks: dict[int, list[tuple[int, float, str]]] = defaultdict(list)
            for feature, token, count, best in db.top_peak_tokens():
                peaks[feature].append((count, best, db.token_text(token)))
    except FeatureDBError:
        return None
    return {f: [text for _, _, text in sorted(p, key=lambda t: (-t[0], -t[1]))[:n_tokens]]
            for f, p in peaks.items()}


def family_trees(chain: list[PairResult], names: list[str], n_tokens: int, measure: str,
                 tokens: list[dict[int, list[str]] | None]) -> list[dict[str, Any]]:
    """One tree per classified feature of the smallest size (`chain`: the consecutive pairs,
    smallest first; `tokens`: each size's top tokens or None)."""
    sizes = [chain[0].n_small] + [p.n_large for p in chain]
    fires = [chain[0].fires_S] + [p.fires_L for p in chain]
    kids = [_children(p, measure) for p in chain]

    def node(level: int, feature: int, parent_edge: tuple[float, float] | None) -> dict:
        out: dict[str, Any] = {"feature": feature, "n_features": sizes[level],
                               "run": names[level],
                               "frequency": float(fires[level][feature]) / n_tokens}
        if parent_edge is not None:
            out["decoder_cosine"], out["correlation"] = (_num(v) for v in parent_edge)
        table = tokens[level]
        if table is not None:
            out["top_tokens"] = table.get(feature, [])
        if level < len(chain):
            cls = chain[level].classes[measure].small_S[feature]
            out["class"] = SMALL_CLASSES[cls] if cls >= 0 else None
            out["children"] = [node(level + 1, child, edge)
                               for child, edge in kids[level].get(feature, [])]
        return out

    roots = np.flatnonzero(chain[0].classes[measure].small_S >= 0)
    return [node(0, int(f), None) for f in roots]


def _children(pair: PairResult, measure: str) -> dict[int, list[tuple[int, tuple[float, float]]]]:
    """parent -> [(child, (decoder cosine, correlation) to the parent)], most similar first."""
    match, cross = pair.matched[measure], pair.cross[measure]
    is_child = pair.classes[measure].large_L > 0
    out: dict[int, list[tuple[int, tuple[float, float]]]] = defaultdict(list)
    for i in np.argsort(-match.score_L, kind="stable"):
        if is_child[i]:
            score, other = float(match.score_L[i]), float(cross[i])
            edge = (score, other) if measure == "decoder" else (other, score)
            out[int(match.parent_L[i])].append((int(i), edge))
    return out


def descendants(tree: dict[str, Any]) -> int:
    """Nodes below `tree`."""
    return sum(1 + descendants(c) for c in tree.get("children", []))


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
