"""Write an analysis into a new feature database, atomically (temp file, fsync, rename).

`FeatureDBWriter` writes it incrementally, so the whole analysis of a large dictionary never has
to be in memory: the per-feature tables (features, examples, intervals, histograms) of one
feature slice at a time, in feature order, then the analyses of the whole dictionary (decoder
neighbours, logit effects, map, co-occurrence, vocab, meta), then one publish. Until then the
database lives in a temp file beside the target; an error (or leaving without `finish`)
deletes it, so a target is never half written. `write_feature_db` does all of it for an
analysis held at once.

Examples are inserted in (feature, kind, interval, rank) order, so a database written slice by
slice is the same, row ids included, as one written at once, and a feature's examples lie
together in the table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch
from torch import Tensor

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.featuredb.schema import EXAMPLE_KINDS, SCHEMA, SCHEMA_VERSION
from monosemantic.fsutil import publish, temp_path

if TYPE_CHECKING:
    from monosemantic.analysis.bottomk import GroupedBottomK
    from monosemantic.analysis.decoder import LogitEffects
    from monosemantic.analysis.onepass import FeatureAnalysis

# Features whose examples are gathered and sorted at once: bounds the writer's own memory.
_EXAMPLE_CHUNK = 4096
_EXAMPLE_COLUMNS = "feature, kind, interval, rank, row, activation, peak, tokens, acts"


class FeatureDBWriter:
    """A feature database written slice by slice: `add` each `FeatureAnalysis` in feature
    order, then `finish` publishes it. Use it as a context manager: on an error inside the
    block, or without `finish`, nothing is published and the temp file is removed."""

    def __init__(self, path: str | Path, part: bool = False):
        self.path = Path(path)
        self.part = part
        """A part database (`finish_part`): slices in feature order, with gaps between them."""
        self._tmp = temp_path(self.path)
        self._tmp.unlink(missing_ok=True)
        self._con: sqlite3.Connection | None = sqlite3.connect(self._tmp)
        self._con.executescript(SCHEMA)
        self._tokens_seen: set[int] = set()
        self.n_features = 0
        """Features written so far (the next slice starts here)."""
        self.n_tokens: int | None = None
        self._options: dict[str, Any] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()  # after `finish` there is nothing left to abort

    def add(self, analysis: FeatureAnalysis, feature_lo: int | None = None) -> None:
        """Write the per-feature tables of `analysis`, whose feature 0 is dictionary feature
        `feature_lo` (default `analysis.feature_lo`, else 0); slices must come in order."""
        con = self._open()
        lo = int(getattr(analysis, "feature_lo", 0) if feature_lo is None else feature_lo)
        self._check_next(lo, analysis.n_tokens, to_dict(analysis.options))
        with con:
            _write_features(con, analysis, lo)
            for first in range(0, analysis.n_features, _EXAMPLE_CHUNK):
                stop = min(first + _EXAMPLE_CHUNK, analysis.n_features)
                con.executemany(
                    f"INSERT INTO examples ({_EXAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _example_rows(analysis, first, stop, lo, self._tokens_seen))
            if analysis.interval_counts_FI is not None:
                _write_intervals(con, analysis, lo)
        self.n_features = lo + analysis.n_features

    def _check_next(self, lo: int, n_tokens: int, options: dict[str, Any]) -> None:
        """A slice starting at feature `lo` may come next; remember its rows and options."""
        if lo < self.n_features or (lo > self.n_features and not self.part):
            raise ValueError(f"feature slice at {lo} added after features [0, "
                             f"{self.n_features}): add slices in feature order")
        if self.n_tokens is not None and n_tokens != self.n_tokens:
            raise ValueError(f"slice of {n_tokens} tokens, earlier ones of "
                             f"{self.n_tokens}: every slice must analyse the same rows")
        if self._options is not None and options != self._options:
            raise ValueError("slices analysed with other pass options cannot share a database")
        self.n_tokens, self._options = n_tokens, options

    def finish_part(self) -> Path:
        """Publish the slices added so far as a part database, for `add_part`: their
        per-feature tables, the tokens their examples hold (`vocab`, without text), their row
        count and pass options (`meta`). How the ranks of a distributed analysis hand their
        slices to rank 0."""
        con = self._open()
        if self.n_tokens is None:
            raise ValueError("no feature slice was added")
        with con:
            con.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("n_tokens", json.dumps(self.n_tokens)), ("options", json.dumps(self._options))])
            con.executemany("INSERT INTO vocab VALUES (?, '')",
                            ((t,) for t in sorted(self._tokens_seen)))
        return self._publish()

    def add_part(self, part: str | Path, lo: int, hi: int) -> None:
        """Copy the slice of features [lo, hi) from the part database `part` (`finish_part`),
        as `add` would write it (same rows, same row ids)."""
        con = self._open()
        if not Path(part).is_file():  # ATTACH would create an empty database
            raise UserError(f"part database {part} is missing: a distributed analysis needs a "
                            "run folder every rank sees (a shared filesystem)")
        con.execute("ATTACH DATABASE ? AS part", (str(part),))
        try:
            meta = dict(con.execute("SELECT key, value FROM part.meta").fetchall())
            self._check_next(lo, json.loads(meta["n_tokens"]), json.loads(meta["options"]))
            span = (lo, hi)
            with con:
                con.execute("INSERT INTO features SELECT * FROM part.features "
                            "WHERE id >= ? AND id < ? ORDER BY id", span)
                con.execute(f"INSERT INTO examples ({_EXAMPLE_COLUMNS}) SELECT "
                            f"{_EXAMPLE_COLUMNS} FROM part.examples "
                            "WHERE feature >= ? AND feature < ? ORDER BY id", span)
                con.execute("INSERT INTO intervals SELECT * FROM part.intervals "
                            "WHERE feature >= ? AND feature < ? ORDER BY rowid", span)
                con.execute("INSERT INTO histograms SELECT * FROM part.histograms "
                            "WHERE feature >= ? AND feature < ? ORDER BY feature", span)
            self._tokens_seen.update(t for (t,) in con.execute("SELECT token_id FROM part.vocab"))
        finally:
            con.execute("DETACH DATABASE part")
        self.n_features = hi

    def finish(self, meta: dict[str, Any], decode_token: Callable[[int], str] | None = None,
               logit_effects: LogitEffects | None = None,
               cosine_neighbours: tuple[Tensor, Tensor] | None = None,
               map_coords: tuple[Tensor, Tensor | None] | None = None,
               cooccur_neighbours: tuple[Tensor, Tensor] | None = None,
               clusters: list[dict[str, Any]] | None = None) -> Path:
        """Write the whole-dictionary tables and meta, then publish; returns the path.

        Arguments as `write_feature_db`'s; every tensor covers all features written."""
        con = self._open()
        if self.n_tokens is None or self._options is None:
            raise ValueError("no feature slice was added")
        meta = {**meta, "schema_version": SCHEMA_VERSION, "n_tokens": self.n_tokens,
                "n_features": self.n_features, "options": self._options}
        with con:
            con.executemany("INSERT INTO meta VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in meta.items()])
            _write_decoder_tables(con, logit_effects, cosine_neighbours, map_coords,
                                  self._tokens_seen)
            if cooccur_neighbours is not None:
                _write_cooccurrence(con, *cooccur_neighbours)
            if clusters is not None:
                con.execute("INSERT INTO meta VALUES ('clusters', ?)", (json.dumps(clusters),))
            decode = decode_token or (lambda i: f"<{i}>")
            con.executemany("INSERT INTO vocab VALUES (?, ?)",
                            ((t, decode(t)) for t in sorted(self._tokens_seen)))
        return self._publish()

    def _publish(self) -> Path:
        self._open().close()
        self._con = None
        publish(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unpublished database (no-op once published)."""
        if self._con is None:
            return
        self._con.close()
        self._con = None
        self._tmp.unlink(missing_ok=True)

    def _open(self) -> sqlite3.Connection:
        if self._con is None:
            raise ValueError(f"the writer of {self.path} is closed (published or aborted)")
        return self._con


def write_feature_db(
    path: str | Path,
    analysis: FeatureAnalysis,
    meta: dict[str, Any],
    decode_token: Callable[[int], str] | None = None,
    logit_effects: LogitEffects | None = None,
    cosine_neighbours: tuple[Tensor, Tensor] | None = None,
    map_coords: tuple[Tensor, Tensor | None] | None = None,
    cooccur_neighbours: tuple[Tensor, Tensor] | None = None,
    clusters: list[dict[str, Any]] | None = None,
) -> Path:
    """Create `path` from a `FeatureAnalysis` of the whole dictionary (and optional decoder
    analyses).

    decode_token: token id -> display text (e.g. `tokenizer.decode([id])`), stored in `vocab`
    for every token the database mentions; without it tokens show as `<id>`.
    cooccur_neighbours: (ids [F, m], Ochiai scores [F, m]), id -1 in empty slots.
    clusters: one dict per cluster id of `map_coords` (label, size, ...), stored in meta
    `clusters`.
    """
    with FeatureDBWriter(path) as writer:
        writer.add(analysis, feature_lo=0)
        return writer.finish(meta, decode_token, logit_effects, cosine_neighbours, map_coords,
                             cooccur_neighbours, clusters)


def _write_features(con: sqlite3.Connection, analysis: FeatureAnalysis, lo: int) -> None:
    con.executemany("INSERT INTO features VALUES (?, ?, ?, ?, ?)", zip(
        range(lo, lo + analysis.n_features), analysis.max_F.tolist(), analysis.count_F.tolist(),
        analysis.density_F.tolist(), analysis.mean_active_F.tolist()))


def _write_decoder_tables(con: sqlite3.Connection, logits: LogitEffects | None,
                          neighbours: tuple[Tensor, Tensor] | None,
                          coords: tuple[Tensor, Tensor | None] | None,
                          tokens_seen: set[int]) -> None:
    if logits is not None:
        con.executemany("INSERT INTO logit_effects VALUES (?, ?, ?, ?, ?)",
                        _logit_rows(logits, tokens_seen))
    if neighbours is not None:
        ids_FN, sims_FN = neighbours
        con.executemany("INSERT INTO neighbours VALUES (?, 'decoder_cosine', ?, ?, ?)", (
            (f, rank, int(o), float(s)) for f, (row_o, row_s) in
            enumerate(zip(ids_FN.tolist(), sims_FN.tolist()))
            for rank, (o, s) in enumerate(zip(row_o, row_s))))
    if coords is not None:
        xy_F2, cluster_F = coords
        clusters = cluster_F.tolist() if cluster_F is not None else [None] * len(xy_F2)
        con.executemany("INSERT INTO map_coords VALUES (?, ?, ?, ?)", (
            (f, x, y, c) for f, ((x, y), c) in enumerate(zip(xy_F2.tolist(), clusters))))


def _write_cooccurrence(con: sqlite3.Connection, ids_FM: Tensor, scores_FM: Tensor) -> None:
    con.executemany("INSERT INTO neighbours VALUES (?, 'cooccurrence', ?, ?, ?)", (
        (f, rank, o, s) for f, (row_o, row_s) in enumerate(zip(ids_FM.tolist(),
                                                               scores_FM.tolist()))
        for rank, (o, s) in enumerate(zip(row_o, row_s)) if o >= 0))


def _example_lists(analysis: FeatureAnalysis) -> list[tuple[str, GroupedBottomK, int]]:
    """(kind, list, groups per feature) in `EXAMPLE_KINDS` order, the lists the pass kept."""
    lists: dict[str, tuple[GroupedBottomK | None, int]] = {
        "top": (analysis.top, 1), "random": (analysis.random, 1), "zero": (analysis.zero, 1),
        "interval": (analysis.intervals, analysis.options.n_intervals)}
    out = []
    for kind in EXAMPLE_KINDS:
        store, per_feature = lists[kind]
        if store is not None:
            out.append((kind, store, per_feature))
    return out


def _example_rows(analysis: FeatureAnalysis, first: int, stop: int, lo: int, tokens_seen: set[int]
                  ) -> Iterator[tuple]:
    """Examples of local features [first, stop), ordered by (feature, kind, interval, rank),
    as rows of the examples table (feature ids offset by `lo`)."""
    columns = [_example_columns(kind, store, per_feature, first, stop)
               for kind, store, per_feature in _example_lists(analysis)]
    kind_Q = np.concatenate([np.full(len(c["feature"]), i) for i, c in enumerate(columns)])
    at_Q = np.concatenate([np.arange(len(c["feature"])) for c in columns])
    # Stable: within a feature the kinds stay in list order, each already by interval, rank.
    order_Q = np.argsort(np.concatenate([c["feature"] for c in columns]), kind="stable")
    for c in columns:
        tokens_QW = c["tokens"]
        tokens_seen.update(np.unique(tokens_QW[tokens_QW >= 0]).tolist())
    for i, q in zip(kind_Q[order_Q].tolist(), at_Q[order_Q].tolist()):
        c = columns[i]
        n = int(c["length"][q])
        yield (lo + int(c["feature"][q]), c["kind"], c["interval"][q], c["rank"][q], c["row"][q],
               c["value"][q], c["peak"][q], c["tokens"][q, :n].astype("<i4").tobytes(),
               c["acts"][q, :n].astype("<f4").tobytes())


def _example_columns(kind: str, store: GroupedBottomK, per_feature: int, first: int, stop: int
                     ) -> dict[str, Any]:
    """The filled slots of the groups of local features [first, stop) of one example list,
    in (group, slot) order: one array (or list) per column."""
    groups = slice(first * per_feature, stop * per_feature)
    group_Q, slot_Q = torch.isfinite(store.keys_GR[groups]).nonzero(as_tuple=True)  # filled
    group_Q = group_Q + first * per_feature
    tokens_QW = store.tokens_GRW[group_Q, slot_Q].numpy()
    return {
        "kind": kind, "feature": (group_Q // per_feature).numpy(),
        "interval": ((group_Q % per_feature).tolist() if kind == "interval"
                     else [None] * len(group_Q)),
        "rank": slot_Q.tolist(), "row": store.rows_GR[group_Q, slot_Q].tolist(),
        "value": store.vals_GR[group_Q, slot_Q].tolist(),
        "peak": store.offset_GR[group_Q, slot_Q].tolist(), "tokens": tokens_QW,
        "acts": store.acts_GRW[group_Q, slot_Q].float().numpy(),
        "length": (tokens_QW >= 0).sum(axis=1)}


def _write_intervals(con: sqlite3.Connection, analysis: FeatureAnalysis, lo: int) -> None:
    counts_FI, hist_FH = analysis.interval_counts_FI, analysis.hist_FH
    # `add` writes intervals only after pass 2, which fills both.
    assert counts_FI is not None and hist_FH is not None
    total_F = counts_FI.sum(dim=1, keepdim=True)
    shares_FI = (counts_FI.double() / total_F.clamp(min=1)).tolist()
    edges_FI1 = analysis.interval_edges_FI1().tolist()
    con.executemany("INSERT INTO intervals VALUES (?, ?, ?, ?, ?, ?)", (
        (lo + f, j, edges_FI1[f][j], edges_FI1[f][j + 1], c, shares_FI[f][j])
        for f, row in enumerate(counts_FI.tolist()) for j, c in enumerate(row)))
    hist_edges = analysis.hist_edges_FH1().tolist()
    con.executemany("INSERT INTO histograms VALUES (?, ?, ?, ?)", (
        (lo + f, json.dumps(hist_edges[f]), json.dumps(counts), counts[0])
        for f, counts in enumerate(hist_FH.tolist())))


def _logit_rows(logits: LogitEffects, tokens_seen: set[int]) -> Iterator[tuple]:
    for direction, ids_FT, vals_FT in (("up", logits.top_ids_FT, logits.top_vals_FT),
                                       ("down", logits.bottom_ids_FT, logits.bottom_vals_FT)):
        tokens_seen.update(torch.unique(ids_FT).tolist())
        for f, (ids, vals) in enumerate(zip(ids_FT.tolist(), vals_FT.tolist())):
            for rank, (t, v) in enumerate(zip(ids, vals)):
                yield f, direction, rank, t, v
