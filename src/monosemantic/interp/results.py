"""Write explanations and scores into a run's feature database (tables `explanations` and
`scores` of schema version 1), through a read-write connection of our own; everything
beyond the columns goes in the JSON `details`."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from monosemantic.featuredb.reader import connect_feature_db


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The row id an INSERT just gave."""
    # sqlite3 leaves lastrowid None only before any INSERT on the cursor.
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


class ResultsDB:
    """Append explanations and scores; one short transaction per write, so readers of the
    same file (the browser) are blocked only for a moment. Thread-safe: the explain and score
    workers share one connection, and two `with connection:` blocks interleaved on it would
    commit each other's transaction."""

    def __init__(self, run_or_db: str | Path):
        self.path, self._con = connect_feature_db(run_or_db, read_only=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_explanation(self, feature: int, explainer: str, text: str,
                        details: dict[str, Any]) -> int:
        with self._lock, self._con:
            cur = self._con.execute(
                "INSERT INTO explanations (feature, explainer, text, created, details) "
                "VALUES (?, ?, ?, ?, ?)", (int(feature), explainer, text, _now(),
                                           json.dumps(details)))
        return _inserted_id(cur)

    def add_score(self, feature: int, explanation: int | None, scorer: str, score: float,
                  details: dict[str, Any]) -> int:
        with self._lock, self._con:
            cur = self._con.execute(
                "INSERT INTO scores (feature, explanation, scorer, score, created, details) "
                "VALUES (?, ?, ?, ?, ?, ?)", (int(feature), explanation, scorer, float(score),
                                              _now(), json.dumps(details)))
        return _inserted_id(cur)

    def explanations(self, explainer: str | None = None) -> dict[int, dict[str, Any]]:
        """The latest explanation of each feature (by `explainer` when given)."""
        sql = "SELECT id, feature, explainer, text, details FROM explanations"
        args: tuple = ()
        if explainer is not None:
            sql += " WHERE explainer = ?"
            args = (explainer,)
        latest: dict[int, dict[str, Any]] = {}
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        for id_, feature, who, text, details in rows:
            latest[feature] = {"id": id_, "explainer": who, "text": text,
                               "details": json.loads(details or "{}")}
        return latest

    def scored(self, scorer: str, judge: str) -> set[int]:
        """Explanation ids already scored by `scorer` with `judge` (details.judge)."""
        with self._lock:
            rows = self._con.execute("SELECT explanation, details FROM scores WHERE scorer = ?",
                                     (scorer,)).fetchall()
        return {exp for exp, details in rows
                if json.loads(details or "{}").get("judge") == judge}

    def scores(self, scorer: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT feature, explanation, scorer, score, details FROM scores"
        with self._lock:
            rows = (self._con.execute(sql + " WHERE scorer = ?", (scorer,)) if scorer
                    else self._con.execute(sql)).fetchall()
        return [{"feature": f, "explanation": e, "scorer": s, "score": v,
                 "details": json.loads(d or "{}")} for f, e, s, v, d in rows]
