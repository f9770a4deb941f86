"""Read-only view of a run for the browser: feature database, evaluation, training curves.

Nothing here touches the model. The database is opened read-only by `FeatureDB`; its single
connection is shared by the server's worker threads behind a lock (SQLite reads take
microseconds to a few milliseconds, far below the cost of one connection per thread).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.errors import UserError
from monosemantic.featuredb.reader import Example, FeatureCard, FeatureDB, FeatureDBError
from monosemantic.featuredb.schema import DB_FILENAME

# Keys of metrics.jsonl records plotted on the overview (others stay in the file).
CURVE_KEYS = ("step", "tokens", "loss", "loss_mse", "loss_aux", "nmse", "variance_explained",
              "l0", "dead_fraction", "dense_fraction", "lr")
# Training-config keys shown on the overview.
TRAIN_KEYS = ("architecture", "n_features", "k", "l1_coefficient", "lr", "batch_size", "steps",
              "total_tokens", "ctx_len", "model", "hook", "store", "seed")


class UnknownFeature(LookupError):
    """A feature id outside the run's dictionary."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_curves(path: Path) -> dict[str, list[dict[str, float]]]:
    """metrics.jsonl as {split: [record with CURVE_KEYS]}; unreadable lines are skipped (a run
    still training may have a partial last line)."""
    curves: dict[str, list[dict[str, float]]] = {}
    if not path.is_file():
        return curves
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        curves.setdefault(str(rec.get("split", "train")), []).append(
            {k: rec[k] for k in CURVE_KEYS if isinstance(rec.get(k), (int, float))})
    return curves


def density_histogram(densities: list[float], lo: float = -8.0, width: float = 0.25) -> dict:
    """Histogram of log10(density) of the features that fired; dead ones counted apart."""
    alive = [d for d in densities if d > 0]
    lo = min([lo, *(math.floor(math.log10(d) / width) * width for d in alive)])
    n_bins = round(-lo / width)
    edges = [lo + i * width for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for d in alive:
        counts[min(int((math.log10(d) - lo) / width), n_bins - 1)] += 1
    return {"log10_edges": edges, "counts": counts, "n_dead": len(densities) - len(alive)}


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

    def __init__(self, run: str | Path):
        self.run = Path(run)
        if not self.run.is_dir():
            raise UserError(f"run directory {self.run} does not exist")
        if not (self.run / DB_FILENAME).is_file() and (self.run / "sae" / DB_FILENAME).is_file():
            self.run = self.run / "sae"  # the demo's output folder: its training run is sae/
        if not (self.run / DB_FILENAME).is_file():
            raise UserError(f"{self.run} has no {DB_FILENAME}: run `monosemantic analyze "
                            f"{self.run}` first")
        try:
            self.db = FeatureDB(self.run)
        except FeatureDBError as err:
            raise UserError(str(err)) from err
        # Queries FeatureDB has no method for go through a second read-only connection.
        self._con = sqlite3.connect(f"file:{self.db.path}?mode=ro", uri=True,
                                    check_same_thread=False)
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
            print(f"monosemantic serve: could not pre-compute the map / token index: {err}")

    def close(self) -> None:
        self.db.close()
        self._con.close()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

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
        return card

    def label(self, feature: int) -> str | None:
        rows = self._query("SELECT text FROM explanations WHERE feature = ? ORDER BY id DESC "
                           "LIMIT 1", (feature,))
        return rows[0][0] if rows else None

    def labels_of(self, features: set[int]) -> dict[int, str]:
        """Latest explanation of each of `features` that has one (one query)."""
        if not features:
            return {}
        marks = ",".join("?" * len(features))
        return dict(self._query(
            f"SELECT feature, text FROM explanations WHERE id IN (SELECT max(id) FROM "
            f"explanations WHERE feature IN ({marks}) GROUP BY feature)", tuple(features)))

    def labels(self) -> dict[int, str]:
        """Latest explanation of every explained feature."""
        return dict(self._query(
            "SELECT feature, text FROM explanations WHERE id IN "
            "(SELECT max(id) FROM explanations GROUP BY feature)"))

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
        train_cfg = _read_json(self.run / "cfg.json") or {}
        # The SAE's options are nested under "sae" (flat in runs of earlier versions).
        train_cfg = {**train_cfg, **(train_cfg.get("sae") or {})}
        sae_cfg = _read_json(self.run / "sae" / "cfg.json") or {}
        evaluation = _read_json(self.run / "eval.json") or {}
        n_explained = self._query("SELECT count(DISTINCT feature) FROM explanations")[0][0]
        return {
            "run": self.run.name,
            "model": meta.get("model"),
            "hook": meta.get("hook"),
            "architecture": meta.get("architecture") or sae_cfg.get("architecture"),
            "n_features": self.n_features,
            "d_in": sae_cfg.get("d_in"),
            "k": sae_cfg.get("k") or train_cfg.get("k"),
            "analysed_tokens": meta.get("n_tokens"),
            "training": {k: train_cfg[k] for k in TRAIN_KEYS if k in train_cfg},
            "eval": evaluation.get("metrics"),
            "eval_formulas": evaluation.get("formulas"),
            "curves": read_curves(self.run / "metrics.jsonl"),
            "density_histogram": density_histogram([s["density"] for s in self._stats]),
            "n_explained": n_explained,
        }

    # ----- search ---------------------------------------------------------------------------
    def search_explanations(self, words: list[str], limit: int) -> list[dict[str, Any]]:
        """Features whose explanation contains every word (case-insensitive)."""
        words = [w for w in words if w]
        if not words:
            return []
        where = " AND ".join(["e.text LIKE ? ESCAPE '\\'"] * len(words))
        params = tuple("%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                       + "%" for w in words)
        rows = self._query(
            "SELECT e.feature, e.text, e.explainer, (SELECT max(s.score) FROM scores s "
            f"WHERE s.explanation = e.id) FROM explanations e WHERE {where} "
            "ORDER BY e.id DESC", params)
        seen: dict[int, dict[str, Any]] = {}
        for feature, text, explainer, score in rows:
            if feature not in seen:
                seen[feature] = {"feature": feature, "match": "explanation", "text": text,
                                 "explainer": explainer, "score": score}
        hits = sorted(seen.values(), key=lambda h: (-(h["score"] or 0), h["feature"]))
        return [self.with_stats(h) for h in hits[:limit]]

    def _build_token_index(self) -> dict[int, list[tuple[int, int, float]]]:
        """token id -> [(feature, top examples peaking on it, best activation)]. SQLite cuts
        the peak token's 4 bytes out of each window blob, so no window is decoded in Python."""
        index: dict[int, list[tuple[int, int, float]]] = {}
        for feature, blob, n, best in self._query(
                "SELECT feature, substr(tokens, peak * 4 + 1, 4) AS t, count(*), max(activation) "
                "FROM examples WHERE kind = 'top' GROUP BY feature, t"):
            tok = int.from_bytes(blob, "little", signed=True)
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
        vocab = self._query("SELECT token_id, text FROM vocab")
        ids = {tid: text for tid, text in vocab if text.strip().lower() == wanted}
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
        return pts

    def _coords(self) -> dict[str, Any]:
        rows = self._query("SELECT feature, x, y, cluster FROM map_coords ORDER BY feature")
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

        path = self.run / "sae" / "sae_weights.safetensors"
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
