"""`harvest` under torchrun: the ranks split the forward passes; the store is the one a single
process writes, file for file.

Every rank reads and tokenizes the whole corpus in the same order as a 1-process harvest, so
every rank knows the global row index of every batch; rank r of N runs the model only on the
batches that hold rows of its shards (s % N = r, `owned`), and writes those shards itself. A
batch that straddles two shards runs on both owners (at most one batch per shard boundary).
The same batches go through the same model, so a shard holds the bytes the 1-process harvest
writes there: the rows come in corpus order, the manifest is the same. Rank 0 writes the
manifest once every rank is done (after gathering their shard records).

Cost: the corpus is read and tokenized on every rank (in a background thread, overlapping
the forward passes), so the speed-up is bounded where tokenizing the corpus takes as long as
a rank's share of the forwards (small models).

Crashes: each shard is recorded once written (`owned`); running the same command again, with
any number of ranks, harvests only the missing shards. The store directory must be one
filesystem all ranks see.
"""

from __future__ import annotations

from pathlib import Path

import torch

from monosemantic.activations.harvest import TORCH_DTYPES, HarvestConfig, header, store_dirs
from monosemantic.activations.manifest import StoreError, read_manifest
from monosemantic.activations.model_rows import context_batches, model_rows
from monosemantic.activations.owned import OwnedShards, finalize_store, read_records, shard_span
from monosemantic.activations.writer import StoreWriter
from monosemantic.console import say
from monosemantic.data import CorpusReport
from monosemantic.data.documents import HF_PREFIX, LOCAL_SOURCES
from monosemantic.distributed import Ranks
from monosemantic.distributed.collective import agree, gather_to_main
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel
from monosemantic.progress import progress


def harvest_ranks(cfg: HarvestConfig, ranks: Ranks, device: torch.device) -> int:
    """This rank's part of the distributed harvest (module docstring); returns the rows stored
    per hook. Setup errors on any rank stop every rank (`distributed.agree`)."""
    dirs = store_dirs(cfg)
    lm = agree(ranks, lambda: _setup(cfg, ranks, device, dirs))
    manifests = agree(ranks, lambda: _read_manifests(dirs))
    todo = [h for h in dirs if not manifests[h]["complete"]]
    if not todo:
        rows = int(manifests[cfg.hooks[0]]["rows"])
        if ranks.is_main:
            say(f"{cfg.out}: already complete ({rows:,} rows per hook)")
        return rows
    writers = agree(ranks, lambda: {
        h: OwnedShards(dirs[h], lm.hook_point(h).width, cfg.dtype, cfg.shard_rows, ranks.rank,
                       ranks.world, read_records(dirs[h])) for h in todo})
    report = CorpusReport()
    total = _run(cfg, lm, writers, report, ranks.is_main)
    for writer in writers.values():
        writer.finish(total)
    gathered = gather_to_main(ranks, {h: w.records for h, w in writers.items()})
    if gathered is not None:
        for hook in todo:
            records = {s: r for part in gathered for s, r in part[hook].items()}
            finalize_store(dirs[hook], records, total)
        say(report.summary())
        short = f" (the corpus ran out; asked for {cfg.tokens:,})" if total < cfg.tokens else ""
        say(f"stored {total:,} rows{short} per hook in {cfg.out} on {ranks.world} ranks: "
            + ", ".join(f"{h} ({lm.hook_point(h).width}, {cfg.dtype})" for h in dirs))
    ranks.barrier()  # every rank returns once the store is complete
    return total


def _setup(cfg: HarvestConfig, ranks: Ranks, device: torch.device,
           dirs: dict[str, Path]) -> LoadedModel:
    """Every rank: the corpus is readable and the model loads; rank 0 also creates (or checks,
    to resume) each hook's store."""
    from monosemantic.models import load_model

    source = cfg.corpus.source
    if source not in LOCAL_SOURCES and not source.startswith(HF_PREFIX):
        if not Path(source).exists():
            raise UserError(f"corpus {source} does not exist or cannot be read here: every "
                            "rank reads the whole corpus, so it must be on a path all see")
    lm = load_model(cfg.model, device=str(device), dtype=TORCH_DTYPES[cfg.model_dtype])
    if ranks.is_main:
        for hook, path in dirs.items():
            StoreWriter(path, header(cfg, lm, hook), lm.hook_point(hook).width, cfg.dtype,
                        cfg.shard_rows)
    # The other ranks read rank 0's manifests only after this step (the next `agree`).
    return lm


def _read_manifests(dirs: dict[str, Path]) -> dict[str, dict]:
    """The manifests rank 0 wrote or checked, as this rank sees them."""
    try:
        return {hook: read_manifest(path) for hook, path in dirs.items()}
    except StoreError as err:
        raise StoreError(f"this rank cannot read the store rank 0 prepared ({err}); --out must "
                         "be a folder every rank sees (a shared filesystem)") from err


def _run(cfg: HarvestConfig, lm: LoadedModel, writers: dict[str, OwnedShards],
         report: CorpusReport, show: bool) -> int:
    """Go through the corpus's batches up to `cfg.tokens` rows, running and storing those of
    this rank's missing shards; returns the rows reached (the same on every rank)."""
    size = cfg.shard_rows

    def run_rows(first_row: int, n_rows: int) -> bool:
        n = min(n_rows, cfg.tokens - first_row)
        return any(w.needs(s) for s in shard_span(first_row, n, size) for w in writers.values())

    batches = context_batches(lm, cfg.corpus, cfg.ctx_len, cfg.batch_size, report)
    row = 0
    bar = progress(total=cfg.tokens, desc="harvest", unit="tok", disable=not show)
    try:
        for rows in model_rows(lm, batches, list(writers), cfg.exclude_special,
                               run_rows=run_rows):
            take = min(rows.n_rows, cfg.tokens - row)
            if rows.acts is not None:
                for hook, writer in writers.items():
                    writer.append(rows.acts[hook][:take], rows.tokens_N[:take],
                                  rows.doc_ids_N[:take], rows.positions_N[:take],
                                  batch=rows.index, first_row=row)
            bar.update(take)
            row += take
            if row >= cfg.tokens:
                break
    finally:
        bar.close()
    return row
