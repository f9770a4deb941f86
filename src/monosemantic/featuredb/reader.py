"""`FeatureDB`: read a run's feature database without loading the model or the SAE."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from monosemantic.errors import UserError
from monosemantic.featuredb.schema import DB_FILENAME, SCHEMA_VERSION


class FeatureDBError(UserError):
    """A missing feature database, one of another schema version, or an unknown feature."""


@dataclass
class Example:
    """One token window around a peak, with the feature's activation on every token."""

    kind: str
    rank: int
    row: int
    activation: float
    peak: int
    """Index of the peak token in `token_ids`."""
    token_ids: list[int]
    tokens: list[str]
    acts: list[float]
    interval: int | None = None


@dataclass
class Interval:
    idx: int
    lo: float
    hi: float
    count: int
    share: float
    """Fraction of all the feature's activations that fall in [lo, hi)."""
    examples: list[Example] = field(default_factory=list)


@dataclass
class FeatureCard:
    """Everything the database holds about one feature."""

    id: int
    max_act: float
    count: int
    density: float
    mean_act: float
    top: list[Example]
    intervals: list[Interval]
    random: list[Example]
    zero: list[Example]
    histogram: dict[str, Any] | None
    logits_up: list[tuple[str, float]]
    logits_down: list[tuple[str, float]]
    neighbours: dict[str, list[tuple[int, float]]]
    explanations: list[dict[str, Any]]
    scores: list[dict[str, Any]]


def db_path(run_or_db: str | Path) -> Path:
    """RUN/features.sqlite for a run directory; a database path as is."""
    path = Path(run_or_db)
    return path / DB_FILENAME if path.is_dir() else path


def connect_feature_db(run_or_db: str | Path, read_only: bool = True
                       ) -> tuple[Path, sqlite3.Connection]:
    """(path, connection) of a run's feature database, after checking it exists and has this
    version's schema. Read-only connections cannot write even by mistake (the browser's)."""
    path = db_path(run_or_db)
    if not path.is_file():
        raise FeatureDBError(f"no feature database at {path}: run `monosemantic "
                             f"analyze RUN` first")
    if read_only:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
    try:
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        con.close()
        raise FeatureDBError(f"{path} is not a feature database ({err})") from err
    version = json.loads(row[0]) if row else None
    if version != SCHEMA_VERSION:
        con.close()
        raise FeatureDBError(f"{path} has feature database schema version {version}; "
                             f"this monosemantic reads version {SCHEMA_VERSION}: run "
                             f"`monosemantic analyze RUN` again to rebuild it")
    return path, con


class FeatureDB:
    """Read-only access to a feature database (`FeatureDB(path).feature(i)`)."""

    def __init__(self, path: str | Path):
        self.path, self._con = connect_feature_db(path, read_only=True)
        self.meta = {k: json.loads(v) for k, v in self._con.execute("SELECT key, value FROM meta")}
        self.n_features = int(self.meta["n_features"])
        self._vocab: dict[int, str] | None = None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def vocab(self) -> dict[int, str]:
        """token id -> its text, for the tokens the database stores."""
        if self._vocab is None:
            self._vocab = dict(self._con.execute("SELECT token_id, text FROM vocab"))
        return self._vocab

    def token_text(self, token_id: int) -> str:
        return self.vocab().get(token_id, f"<{token_id}>")

    def stats(self) -> list[dict[str, Any]]:
        """Statistics of every feature (id, max_act, count, density, mean_act)."""
        cur = self._con.execute("SELECT id, max_act, count, density, mean_act FROM features "
                                "ORDER BY id")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def clusters(self) -> list[dict[str, Any]]:
        """Feature-map clusters (id, size, label, tokens); [] for a database without them."""
        return list(self.meta.get("clusters") or [])

    def map_coords(self) -> list[tuple[int, float, float, int | None]]:
        """(feature, x, y, cluster) of every feature on the 2-D map; [] when not computed."""
        return list(self._con.execute("SELECT feature, x, y, cluster FROM map_coords "
                                      "ORDER BY feature"))

    def neighbours(self, feature: int, kind: str = "decoder_cosine") -> list[tuple[int, float]]:
        """(other feature, score) of one kind (decoder_cosine, cooccurrence), best first."""
        return list(self._con.execute("SELECT other, score FROM neighbours WHERE feature = ? "
                                      "AND kind = ? ORDER BY rank", (int(feature), kind)))

    def top_peak_tokens(self) -> list[tuple[int, int, int, float]]:
        """(feature, token id, top examples peaking on it, best activation) for every feature
        and peak token of its top examples. SQLite cuts the peak token's 4 bytes out of each
        window blob, so no window is decoded in Python."""
        rows = self._con.execute(
            "SELECT feature, substr(tokens, peak * 4 + 1, 4) AS t, count(*), max(activation) "
            "FROM examples WHERE kind = 'top' GROUP BY feature, t")
        return [(feature, int.from_bytes(blob, "little", signed=True), n, best)
                for feature, blob, n, best in rows]

    # ----- explanations (written by `explain` and `score`) --------------------------------------
    def latest_explanations(self, features: Iterable[int] | None = None) -> dict[int, str]:
        """The latest explanation text of each of `features` (of every feature when None) that
        has one."""
        if features is None:
            return dict(self._con.execute(
                "SELECT feature, text FROM explanations WHERE id IN "
                "(SELECT max(id) FROM explanations GROUP BY feature)"))
        wanted = tuple(int(f) for f in features)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return dict(self._con.execute(
            f"SELECT feature, text FROM explanations WHERE id IN (SELECT max(id) FROM "
            f"explanations WHERE feature IN ({marks}) GROUP BY feature)", wanted))

    def n_explained(self) -> int:
        """Features with at least one explanation."""
        return int(self._con.execute(
            "SELECT count(DISTINCT feature) FROM explanations").fetchone()[0])

    def search_explanations(self, words: list[str]) -> list[dict[str, Any]]:
        """Explanations containing every word (case-insensitive), newest first: feature, text,
        explainer and the best score of the explanation (None when unscored)."""
        words = [w for w in words if w]
        if not words:
            return []
        where = " AND ".join(["e.text LIKE ? ESCAPE '\\'"] * len(words))
        params = tuple("%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                       + "%" for w in words)
        rows = self._con.execute(
            "SELECT e.feature, e.text, e.explainer, (SELECT max(s.score) FROM scores s "
            f"WHERE s.explanation = e.id) FROM explanations e WHERE {where} "
            "ORDER BY e.id DESC", params)
        return [{"feature": f, "text": t, "explainer": who, "score": score}
                for f, t, who, score in rows]

    # ----- one feature ----------------------------------------------------------------------
    def examples(self, feature: int, kind: str = "top") -> list[Example]:
        rows = self._con.execute(
            "SELECT kind, rank, row, activation, peak, tokens, acts, interval FROM examples "
            "WHERE feature = ? AND kind = ? ORDER BY interval, rank", (feature, kind))
        out = []
        for kind_, rank, row, act, peak, tok_blob, act_blob, interval in rows:
            ids = np.frombuffer(tok_blob, dtype="<i4").tolist()
            out.append(Example(kind_, rank, row, act, peak, ids,
                               [self.token_text(t) for t in ids],
                               np.frombuffer(act_blob, dtype="<f4").tolist(), interval))
        return out

    def _check(self, feature: int) -> tuple:
        row = self._con.execute("SELECT max_act, count, density, mean_act FROM features "
                                "WHERE id = ?", (int(feature),)).fetchone()
        if row is None:
            raise FeatureDBError(f"feature {feature} is not in {self.path} (ids 0 to "
                                 f"{self.n_features - 1})")
        return row

    def feature(self, feature: int) -> FeatureCard:
        """The card of one feature."""
        max_act, count, density, mean_act = self._check(feature)
        intervals = [Interval(*row) for row in self._con.execute(
            "SELECT idx, lo, hi, count, share FROM intervals WHERE feature = ? ORDER BY idx",
            (feature,))]
        for ex in self.examples(feature, "interval"):
            # The writer stores the interval of every interval example (`_example_columns`).
            assert ex.interval is not None
            intervals[ex.interval].examples.append(ex)
        hist = self._con.execute("SELECT edges, counts FROM histograms WHERE feature = ?",
                                 (feature,)).fetchone()
        logits: dict[str, list[tuple[str, float]]] = {"up": [], "down": []}
        for direction, token_id, value in self._con.execute(
                "SELECT direction, token_id, value FROM logit_effects WHERE feature = ? "
                "ORDER BY direction, rank", (feature,)):
            logits[direction].append((self.token_text(token_id), value))
        neighbours: dict[str, list[tuple[int, float]]] = {}
        for kind, other, score in self._con.execute(
                "SELECT kind, other, score FROM neighbours WHERE feature = ? ORDER BY kind, rank",
                (feature,)):
            neighbours.setdefault(kind, []).append((other, score))
        return FeatureCard(
            id=int(feature), max_act=max_act, count=count, density=density, mean_act=mean_act,
            top=self.examples(feature, "top"), intervals=intervals,
            random=self.examples(feature, "random"), zero=self.examples(feature, "zero"),
            histogram=(None if hist is None else
                       {"edges": json.loads(hist[0]), "counts": json.loads(hist[1])}),
            logits_up=logits["up"], logits_down=logits["down"], neighbours=neighbours,
            explanations=self._dicts("explanations", feature),
            scores=self._dicts("scores", feature))

    def _dicts(self, table: str, feature: int) -> list[dict[str, Any]]:
        cur = self._con.execute(f"SELECT * FROM {table} WHERE feature = ? ORDER BY id",
                                (feature,))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur]
