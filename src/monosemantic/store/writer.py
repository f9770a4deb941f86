"""Write an analysis into a new feature database, atomically (temp file, fsync, rename)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from monosemantic.config import to_dict
from monosemantic.fsutil import publish, temp_path
from monosemantic.store.schema import SCHEMA, SCHEMA_VERSION


def write_feature_db(
    path: str | Path,
    analysis: Any,
    meta: dict[str, Any],
    decode_token: Callable[[int], str] | None = None,
    logit_effects: Any = None,
    cosine_neighbours: tuple[Tensor, Tensor] | None = None,
    map_coords: tuple[Tensor, Tensor | None] | None = None,
    cooccur_neighbours: tuple[Tensor, Tensor] | None = None,
    clusters: list[dict[str, Any]] | None = None,
) -> Path:
    """Create `path` from a `FeatureAnalysis` (and optional decoder analyses).

    decode_token: token id -> display text (e.g. `tokenizer.decode([id])`), stored in `vocab`
    for every token the database mentions; without it tokens show as `<id>`.
    cooccur_neighbours: (ids [F, m], Ochiai scores [F, m]), id -1 in empty slots.
    clusters: one dict per cluster id of `map_coords` (label, size, ...), stored in meta
    `clusters`.
    """
    path = Path(path)
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(SCHEMA)
        with con:
            _write_all(con, analysis, meta, logit_effects, cosine_neighbours, map_coords,
                       decode_token)
            if cooccur_neighbours is not None:
                _write_cooccurrence(con, *cooccur_neighbours)
            if clusters is not None:
                con.execute("INSERT INTO meta VALUES ('clusters', ?)", (json.dumps(clusters),))
    finally:
        con.close()
    publish(tmp, path)
    return path


def _write_all(con, analysis, meta, logits, neighbours, coords, decode_token) -> None:
    meta = {**meta, "schema_version": SCHEMA_VERSION, "n_tokens": analysis.n_tokens,
            "n_features": analysis.n_features, "options": to_dict(analysis.options)}
    con.executemany("INSERT INTO meta VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in meta.items()])
    con.executemany("INSERT INTO features VALUES (?, ?, ?, ?, ?)", zip(
        range(analysis.n_features), analysis.max_F.tolist(), analysis.count_F.tolist(),
        analysis.density_F.tolist(), analysis.mean_active_F.tolist()))
    tokens_seen: set[int] = set()
    for kind, store, per_feature in (("top", analysis.top, 1), ("random", analysis.random, 1),
                                     ("zero", analysis.zero, 1),
                                     ("interval", analysis.intervals,
                                      analysis.options.n_intervals)):
        if store is not None:
            con.executemany(
                "INSERT INTO examples (feature, kind, interval, rank, row, activation, peak, "
                "tokens, acts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _example_rows(kind, store, per_feature, tokens_seen))
    if analysis.interval_counts_FI is not None:
        _write_intervals(con, analysis)
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
    decode = decode_token or (lambda i: f"<{i}>")
    con.executemany("INSERT INTO vocab VALUES (?, ?)",
                    ((t, decode(t)) for t in sorted(tokens_seen)))


def _write_cooccurrence(con, ids_FM: Tensor, scores_FM: Tensor) -> None:
    con.executemany("INSERT INTO neighbours VALUES (?, 'cooccurrence', ?, ?, ?)", (
        (f, rank, o, s) for f, (row_o, row_s) in enumerate(zip(ids_FM.tolist(),
                                                               scores_FM.tolist()))
        for rank, (o, s) in enumerate(zip(row_o, row_s)) if o >= 0))


def _example_rows(kind: str, store, per_feature: int, tokens_seen: set[int]) -> Iterator[tuple]:
    group_Q, slot_Q = store.filled_GR().nonzero(as_tuple=True)
    tokens_QW = store.tokens_GRW[group_Q, slot_Q].numpy()
    acts_QW = store.acts_GRW[group_Q, slot_Q].float().numpy()
    lengths_Q = (tokens_QW >= 0).sum(axis=1)
    tokens_seen.update(np.unique(tokens_QW[tokens_QW >= 0]).tolist())
    rows_Q = store.rows_GR[group_Q, slot_Q].tolist()
    vals_Q = store.vals_GR[group_Q, slot_Q].tolist()
    peak_Q = store.offset_GR[group_Q, slot_Q].tolist()
    for q, (g, s) in enumerate(zip(group_Q.tolist(), slot_Q.tolist())):
        n = int(lengths_Q[q])
        yield (g // per_feature, kind, g % per_feature if kind == "interval" else None, s,
               rows_Q[q], vals_Q[q], peak_Q[q],
               tokens_QW[q, :n].astype("<i4").tobytes(), acts_QW[q, :n].astype("<f4").tobytes())


def _write_intervals(con, analysis) -> None:
    counts_FI = analysis.interval_counts_FI
    total_F = counts_FI.sum(dim=1, keepdim=True)
    shares_FI = (counts_FI.double() / total_F.clamp(min=1)).tolist()
    edges_FI1 = analysis.interval_edges_FI1().tolist()
    con.executemany("INSERT INTO intervals VALUES (?, ?, ?, ?, ?, ?)", (
        (f, j, edges_FI1[f][j], edges_FI1[f][j + 1], c, shares_FI[f][j])
        for f, row in enumerate(counts_FI.tolist()) for j, c in enumerate(row)))
    hist_FH = analysis.hist_FH.tolist()
    hist_edges = analysis.hist_edges_FH1().tolist()
    con.executemany("INSERT INTO histograms VALUES (?, ?, ?, ?)", (
        (f, json.dumps(hist_edges[f]), json.dumps(counts), counts[0])
        for f, counts in enumerate(hist_FH)))


def _logit_rows(logits, tokens_seen: set[int]) -> Iterator[tuple]:
    for direction, ids_FT, vals_FT in (("up", logits.top_ids_FT, logits.top_vals_FT),
                                       ("down", logits.bottom_ids_FT, logits.bottom_vals_FT)):
        tokens_seen.update(torch.unique(ids_FT).tolist())
        for f, (ids, vals) in enumerate(zip(ids_FT.tolist(), vals_FT.tolist())):
            for rank, (t, v) in enumerate(zip(ids, vals)):
                yield f, direction, rank, t, v
