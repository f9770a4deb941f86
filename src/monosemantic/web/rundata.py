"""Read-only view of a run for the browser: feature database, evaluation, training curves
(the overview's figures: `web.overview`).

Nothing here touches the model. The database is opened read-only by `FeatureDB`; its single
connection is shared by the server's worker threads behind a lock (SQLite reads take
microseconds to a few milliseconds, far below the cost of one connection per thread).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.featuredb.reader import Example, FeatureCard, FeatureDB, FeatureDBError
from monosemantic.featuredb.schema import DB_FILENAME
from monosemantic.runs import ModelOptions
from monosemantic.web.overview import (
    density_histogram,
    eval_metrics,
    never_fired_rows,
    read_curves,
    training_settings,
)


class UnknownFeature(LookupError):
    """A feature id outside the run's dictionary."""


def _cluster_labels(meta_value: Any) -> dict[int, str]:
    """meta['clusters'] as {cluster id: label}; accepts a {id: label} mapping or a list of
    {"id"/"cluster": .., "label": ..} objects."""
    out: dict[int, str] = {}
    if isinstance(meta_value, dict):
        items = meta_value.get("labels", meta_value)
        if isinstance(items, dict):
            for k, v in items.items():
                if str(k).lstrip("-").isdigit():
                    out[int(k)] = v if isinstance(v, str) else str(v.get("label", "")) \
                        if isinstance(v, dict) else str(v)
            return out
        meta_value = items
    if isinstance(meta_value, list):
        for i, v in enumerate(meta_value):
            if isinstance(v, dict):
                out[int(v.get("id", v.get("cluster", i)))] = str(v.get("label", ""))
            else:
                out[i] = str(v)
    return out


class RunData:
    """What the pages and the JSON API read, from RUN/features.sqlite and the run's files."""

    def __init__(self, run: str | Path, options: ModelOptions | None = None):
        """`options`: the model and hooks of a pretrained SAE folder given as `run`
        (`ModelOptions.find`; the run need not be finished, only analysed)."""
        self.run = (options or ModelOptions()).find(run)
        if not self.run.db_path.is_file():
            text = (" --text CORPUS (a pretrained SAE has no store)"
                    if (self.run.sae_dir / "monosemantic.json").is_file()
                    and self.run.pretrained is not None else "")
            raise UserError(f"{self.run.path} has no {DB_FILENAME}: run `monosemantic analyze "
                            f"{self.run.path}{text}` first")
        try:
            self.db = FeatureDB(self.run.db_path)
        except FeatureDBError as err:
            raise UserError(str(err)) from err
        # FeatureDB's one connection is shared by the server's threads, one query at a time.
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self.n_features = self.db.n_features
        with self._lock:
            self._stats = self.db.stats()
        self.max_act_F = np.array([s["max_act"] for s in self._stats], dtype=np.float32)
        self._token_index: dict[int, list[tuple[int, int, float]]] | None = None
        self._map: dict[str, Any] | None = None
        self._sorted: dict[tuple[str, bool, bool], list[dict[str, Any]]] = {}

    def warm(self) -> None:
        """Build the lazily computed caches (map coordinates, token index) now."""
        try:
            self.map_points()
            self.token_index()
        except (sqlite3.Error, OSError, ValueError) as err:
            # The requests that need them will compute them again and report the error.
            say(f"monosemantic serve: could not pre-compute the map / token index: {err}")

    def close(self) -> None:
        self.db.close()

    @property
    def sites(self) -> str | None:
        """The hook the features read, and for a transcoder the one its decoder writes."""
        hook, hook_out = self.db.meta.get("hook"), self.db.meta.get("hook_out")
        return hook if hook_out is None else f"{hook} → {hook_out}"

    # ----- features -------------------------------------------------------------------------
    def check_feature(self, feature: int) -> int:
        if not 0 <= feature < self.n_features:
            raise UnknownFeature(f"feature {feature} does not exist: this run has features 0 to "
                                 f"{self.n_features - 1}")
        return feature

    def feature(self, feature: int) -> dict[str, Any]:
        """The feature card as JSON-ready data, with neighbour labels for the links."""
        self.check_feature(feature)
        with self._lock:
            card = card_dict(self.db.feature(feature))
        labels = self.labels_of({o for items in card["neighbours"].values() for o, _ in items})
        card["neighbours"] = {kind: [{"feature": o, "score": s, "label": labels.get(o)}
                                     for o, s in items]
                              for kind, items in card["neighbours"].items()}
        for row in card["explanations"] + card["scores"]:
            if isinstance(row.get("details"), str):
                row["details"] = _read_json_text(row["details"])
        card["n_features"] = self.n_features
        card["analysed_tokens"] = self.db.meta.get("n_tokens")
        return card

    def label(self, feature: int) -> str | None:
        return self.labels_of({feature}).get(feature)

    def labels_of(self, features: set[int]) -> dict[int, str]:
        """Latest explanation of each of `features` that has one (one query)."""
        if not features:
            return {}
        with self._lock:
            return self.db.latest_explanations(features)

    def labels(self) -> dict[int, str]:
        """Latest explanation of every explained feature."""
        with self._lock:
            return self.db.latest_explanations()

    def stats(self) -> list[dict[str, Any]]:
        return self._stats

    def sorted_stats(self, key: str, descending: bool, alive_only: bool) -> list[dict[str, Any]]:
        """Feature statistics ordered by `key` (ties by id); cached per ordering."""
        cache_key = (key, descending, alive_only)
        if cache_key not in self._sorted:
            rows = [s for s in self._stats if s["count"] > 0] if alive_only else self._stats
            rows = sorted(rows, key=lambda s: s["id"])
            self._sorted[cache_key] = sorted(rows, key=lambda s: s[key], reverse=descending)
        return self._sorted[cache_key]

    # ----- overview -------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        meta = self.db.meta
        train_cfg = self.run.read_json(self.run.cfg_path)
        # The SAE's options are nested under "sae" (flat in runs of earlier versions).
        train_cfg = {**train_cfg, **(train_cfg.get("sae") or {})}
        sae_cfg = self.run.read_json(self.run.sae_cfg_path)
        evaluation = self.run.read_json(self.run.eval_path)
        try:
            sae_meta = self.run.metadata
        except UserError:  # an SAE saved by another tool: no training record to show
            sae_meta = {}
        with self._lock:
            n_explained = self.db.n_explained()
        metrics = eval_metrics(evaluation)
        histogram = density_histogram([s["density"] for s in self._stats])
        histogram["n_tokens"] = meta.get("n_tokens")
        return {
            "run": self.run.name,
            "model": meta.get("model"),
            "hook": meta.get("hook"),
            "hook_out": meta.get("hook_out"),
            "architecture": meta.get("architecture") or sae_cfg.get("architecture"),
            "n_features": self.n_features,
            "d_in": sae_cfg.get("d_in"),
            "k": sae_cfg.get("k") or train_cfg.get("k"),
            "analysed_tokens": meta.get("n_tokens"),
            "training": training_settings(train_cfg),
            "eval": metrics,
            "eval_formulas": evaluation.get("formulas"),
            "curves": read_curves(self.run.metrics_path),
            "density_histogram": histogram,
            "never_fired": never_fired_rows(metrics, sae_meta, self.n_features,
                                            meta.get("n_tokens"), histogram["n_never_fired"]),
            "n_explained": n_explained,
        }

    # ----- search ---------------------------------------------------------------------------
    def search_explanations(self, words: list[str], limit: int) -> list[dict[str, Any]]:
        """Features whose explanation contains every word (case-insensitive)."""
        with self._lock:
            rows = self.db.search_explanations(words)
        seen: dict[int, dict[str, Any]] = {}
        for row in rows:  # newest first: a feature's latest matching explanation
            if row["feature"] not in seen:
                seen[row["feature"]] = {**row, "match": "explanation"}
        hits = sorted(seen.values(), key=lambda h: (-(h["score"] or 0), h["feature"]))
        return [self.with_stats(h) for h in hits[:limit]]

    def _build_token_index(self) -> dict[int, list[tuple[int, int, float]]]:
        """token id -> [(feature, top examples peaking on it, best activation)]."""
        with self._lock:
            peaks = self.db.top_peak_tokens()
        index: dict[int, list[tuple[int, int, float]]] = {}
        for feature, tok, n, best in peaks:
            index.setdefault(tok, []).append((feature, n, best))
        return index

    def token_index(self) -> dict[int, list[tuple[int, int, float]]]:
        with self._index_lock:
            if self._token_index is None:
                self._token_index = self._build_token_index()
            return self._token_index

    def search_token(self, token: str, limit: int) -> list[dict[str, Any]]:
        """Features whose top examples peak on a token whose text matches `token` (surrounding
        spaces and case ignored), most such examples first."""
        index = self.token_index()
        wanted = token.strip().lower()
        if not wanted:
            return []
        with self._lock:
            vocab = self.db.vocab()
        ids = {tid: text for tid, text in vocab.items() if text.strip().lower() == wanted}
        per_feature: dict[int, dict[str, Any]] = {}
        for tid, text in ids.items():
            for feature, n, best in index.get(tid, []):
                hit = per_feature.setdefault(feature, {"feature": feature, "match": "token",
                                                       "tokens": [], "peaks": 0, "best": 0.0})
                hit["tokens"].append(text)
                hit["peaks"] += n
                hit["best"] = max(hit["best"], best)
        hits = sorted(per_feature.values(), key=lambda h: (-h["peaks"], -h["best"]))
        return [self.with_stats(h) for h in hits[:limit]]

    def with_stats(self, hit: dict[str, Any]) -> dict[str, Any]:
        s = self._stats[hit["feature"]]
        hit.update(max_act=s["max_act"], density=s["density"])
        hit.setdefault("text", self.label(hit["feature"]))
        return hit

    # ----- map ------------------------------------------------------------------------------
    def map_points(self) -> dict[str, Any]:
        """Columns id, x, y, cluster, density, label for every feature with coordinates."""
        with self._index_lock:
            if self._map is None:
                self._map = self._coords()
        labels = self.labels()
        pts = dict(self._map)
        pts["label"] = [labels.get(i) for i in pts["id"]]
        pts["density"] = [self._stats[i]["density"] for i in pts["id"]]
        pts["analysed_tokens"] = self.db.meta.get("n_tokens")
        return pts

    def _coords(self) -> dict[str, Any]:
        with self._lock:
            rows = self.db.map_coords()
        clusters = _cluster_labels(self.db.meta.get("clusters"))
        if rows:
            ids, xs, ys, cl = (list(c) for c in zip(*rows))
            method = "umap"
        else:
            ids, xs, ys = self._pca_coords()
            cl = [None] * len(ids)
            method = "pca"
        return {"method": method, "id": ids, "x": xs, "y": ys, "cluster": cl,
                "cluster_labels": {str(k): v for k, v in clusters.items()}}

    def _pca_coords(self) -> tuple[list[int], list[float], list[float]]:
        """First two principal components of the unit decoder directions: the map when the
        database has no UMAP coordinates (umap-learn was not installed at analysis time)."""
        from safetensors import safe_open

        path = self.run.sae_weights_path
        if not path.is_file():
            return [], [], []
        with safe_open(str(path), "np") as f:
            W_dec_FD = f.get_tensor("W_dec").astype(np.float32)
        norms_F = np.linalg.norm(W_dec_FD, axis=1, keepdims=True)
        unit_FD = W_dec_FD / np.maximum(norms_F, 1e-12)
        centred_FD = unit_FD - unit_FD.mean(0)
        # Eigenvectors of the D x D covariance: much cheaper than an SVD of the F x D matrix.
        _, vecs_DD = np.linalg.eigh(centred_FD.T @ centred_FD)
        xy_F2 = centred_FD @ vecs_DD[:, ::-1][:, :2]
        return (list(range(len(xy_F2))), xy_F2[:, 0].tolist(), xy_F2[:, 1].tolist())


def card_dict(card: FeatureCard) -> dict[str, Any]:
    """A FeatureCard as plain dicts and lists. Shallow on purpose: `dataclasses.asdict` deep-
    copies every token list and was most of a feature request's time."""
    def example(ex: Example) -> dict[str, Any]:
        return dict(vars(ex))

    out = dict(vars(card))
    out["top"] = [example(e) for e in card.top]
    out["random"] = [example(e) for e in card.random]
    out["zero"] = [example(e) for e in card.zero]
    out["intervals"] = [dict(vars(iv), examples=[example(e) for e in iv.examples])
                        for iv in card.intervals]
    out["explanations"] = [dict(r) for r in card.explanations]
    out["scores"] = [dict(r) for r in card.scores]
    return out


def _read_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
