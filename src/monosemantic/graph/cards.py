"""Small feature cards for the graph page, read from each feature node's run database.

A card holds what a reader needs to recognise a feature beside the graph: its top activating
examples (a window around the peak token), the tokens its top examples peak on, its density
and its latest explanation. A node whose run has no database gets no card (the page then says
how to make one); a database that cannot be read, or lacks the feature, gives a card with an
`error` instead.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from monosemantic.featuredb import Example, FeatureDB, FeatureDBError
from monosemantic.runs import RunDir


def feature_cards(graph: dict[str, Any], examples: int = 5, top_tokens: int = 8,
                  before: int = 12, after: int = 4) -> dict[str, dict[str, Any]]:
    """node id -> card of every feature node of `graph` (graph.json's content) whose run has a
    feature database. Examples are cut to `before` tokens before the peak and `after` after;
    nodes of the same feature share one card object."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for node in graph.get("nodes", []):
        if node.get("kind") == "feature" and node.get("run") and node.get("feature") is not None:
            by_run.setdefault(str(node["run"]), []).append(node)
    cards: dict[str, dict[str, Any]] = {}
    for run, nodes in by_run.items():
        path = RunDir(run).db_path
        if not path.is_file():
            continue
        try:
            db = FeatureDB(path)
        except FeatureDBError as err:
            for node in nodes:
                cards[node["id"]] = _error_card(run, int(node["feature"]), err)
            continue
        with db:
            made: dict[int, dict[str, Any]] = {}
            for node in nodes:
                feature = int(node["feature"])
                if feature not in made:
                    made[feature] = _card(db, run, feature, examples, top_tokens, before, after)
                cards[node["id"]] = made[feature]
    return cards


def _card(db: FeatureDB, run: str, feature: int, examples: int, top_tokens: int, before: int,
          after: int) -> dict[str, Any]:
    try:
        card = db.feature(feature)
    except FeatureDBError as err:
        return _error_card(run, feature, err)
    peaks = Counter(ex.tokens[ex.peak] for ex in card.top)
    return {"run": run, "feature": feature, "density": card.density, "count": card.count,
            "max_act": card.max_act, "mean_act": card.mean_act,
            "explanation": card.explanations[-1]["text"] if card.explanations else None,
            "top_tokens": [[text, n] for text, n in peaks.most_common(top_tokens)],
            "examples": [_window(ex, before, after) for ex in card.top[:examples]],
            "logits_up": [[t, round(v, 4)] for t, v in card.logits_up[:5]],
            "logits_down": [[t, round(v, 4)] for t, v in card.logits_down[:5]]}


def _window(ex: Example, before: int, after: int) -> dict[str, Any]:
    """The example's tokens around its peak; `peak` indexes the cut window."""
    lo, hi = max(0, ex.peak - before), min(len(ex.tokens), ex.peak + after + 1)
    return {"tokens": ex.tokens[lo:hi], "acts": [round(a, 4) for a in ex.acts[lo:hi]],
            "peak": ex.peak - lo, "activation": ex.activation}


def _error_card(run: str, feature: int, err: FeatureDBError) -> dict[str, Any]:
    return {"run": run, "feature": feature, "error": str(err)}
