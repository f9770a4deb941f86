"""`analyze` under torchrun: the ranks share the feature slices; rank 0 writes the one database.

The dictionary is cut into slices (`slices.feature_ranges`) of at most ⌈F / N⌉ features for N
ranks (smaller when --feature-slice or --max-pass-memory ask for it), and rank r analyses slices
r, r + N, r + 2N, ... : both passes over all the rows, for its features only. A slice's results
do not depend on which other slices exist (slices.py), so each rank writes its slices'
per-feature tables into a part database (RUN/.features.rank<r>.sqlite, `finish_part`) and
sends rank 0 the little that outlives them (`SlicedAnalysis`: fire counts and peak tokens,
28 bytes per feature of the dictionary from every rank, and its co-occurrence entries).

Rank 0 copies the parts' rows into RUN/features.sqlite slice by slice in feature order (the row
ids a 1-process run gives), computes the analyses of the whole dictionary once (logit effects,
decoder and co-occurrence neighbours, the map), publishes, and removes the parts. The database
equals the 1-process one table for table, row for row; only the meta that describes the
computation differs (`feature_slice`, `pass_state_bytes`, `pass_seconds`). The run folder must
be on a filesystem every rank sees.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from monosemantic.analysis.run import AnalyzeConfig, finish_database, open_inputs, pass_options
from monosemantic.analysis.slices import (
    SlicedAnalysis,
    analyze_sliced,
    choose_slice,
    feature_ranges,
)
from monosemantic.distributed import Ranks
from monosemantic.distributed.collective import agree, gather_to_main
from monosemantic.featuredb.writer import FeatureDBWriter
from monosemantic.progress import progress

if TYPE_CHECKING:
    from monosemantic.analysis.sources import RowSource
    from monosemantic.models import LoadedModel
    from monosemantic.runs import RunDir
    from monosemantic.sae import SAE


def part_path(run_path: Path, rank: int) -> Path:
    """Where rank `rank` writes its slices' tables."""
    return run_path / f".features.rank{rank}.sqlite"


def analyze_ranks(cfg: AnalyzeConfig, ranks: Ranks, device: torch.device,
                  lm: LoadedModel | None = None) -> Path:
    """This rank's share of the distributed analysis (module docstring); returns the database
    path (complete on every rank when this returns). Errors opening the run, its SAE or its
    rows on any rank stop every rank (`distributed.agree`)."""
    run, sae, source, lm = agree(ranks, lambda: open_inputs(cfg, device, lm))
    n_feat = int(sae.cfg.n_features)
    opts = pass_options(cfg, sae, device)
    size = min(choose_slice(n_feat, cfg.feature_slice, cfg.max_pass_memory * 2**30, opts,
                            cfg.batch_size), -(-n_feat // ranks.world))
    ranges = feature_ranges(n_feat, size)
    mine = ranges[ranks.rank::ranks.world]
    passes = 2 if cfg.n_intervals > 0 else 1
    bar = progress(total=(passes * len(mine) * source.max_rows if source.max_rows is not None
                          else None), desc="analyse", unit="tok", disable=not ranks.is_main)
    start = time.perf_counter()
    summary = SlicedAnalysis(n_feat, size)
    if mine:
        with FeatureDBWriter(part_path(run.path, ranks.rank), part=True) as part, bar, \
                torch.no_grad():
            summary = analyze_sliced(
                source.make_batches,
                lambda x_BD, lo, hi: sae.encode_sparse(x_BD.to(device), lo, hi), n_feat, size,
                opts, first_row=source.first_row, on_batch=bar.update, on_slice=part.add,
                ranges=mine)
            part.finish_part()
    gathered = gather_to_main(ranks, summary)
    if gathered is not None:
        _merge(cfg, ranks, gathered, ranges, run, sae, source, lm, device,
               time.perf_counter() - start)
    ranks.barrier()  # every rank returns once the database is published
    return run.db_path


def _merge(cfg: AnalyzeConfig, ranks: Ranks, gathered: list[SlicedAnalysis],
           ranges: list[tuple[int, int]], run: RunDir, sae: SAE, source: RowSource,
           lm: LoadedModel | None, device: torch.device, seconds: float) -> None:
    """Rank 0: the parts' slices in feature order into RUN/features.sqlite, then the analyses
    of the whole dictionary; removes the parts."""
    merged = SlicedAnalysis(int(sae.cfg.n_features), gathered[0].slice_size)
    for rank, summary in enumerate(gathered):
        merged.merge(summary, ranges[rank::ranks.world])
    try:
        with FeatureDBWriter(run.db_path) as writer:
            for i, (lo, hi) in enumerate(ranges):
                writer.add_part(part_path(run.path, i % ranks.world), lo, hi)
            finish_database(writer, cfg, sae, run, source, lm, device, merged, seconds)
    finally:
        # Every part, also those a crashed run with more ranks left behind.
        for part in run.path.glob(part_path(run.path, 0).name.replace("0", "*")):
            part.unlink(missing_ok=True)
