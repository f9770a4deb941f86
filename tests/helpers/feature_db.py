"""Read back a whole feature database, to compare two of them table by table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


def db_rows(path: str | Path, volatile_meta: Iterable[str] = ()) -> dict[str, list[tuple]]:
    """Every row (rowid included) of every table, in rowid order; meta without the keys in
    `volatile_meta` (what names a run or depends on the options and the clock)."""
    con = sqlite3.connect(path)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' ORDER BY name")]
        rows = {t: con.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall()
                for t in tables}
    finally:
        con.close()
    skip = set(volatile_meta)
    rows["meta"] = [r for r in rows["meta"] if r[1] not in skip]
    return rows
