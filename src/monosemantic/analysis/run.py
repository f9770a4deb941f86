"""`monosemantic analyze RUN`: the feature analysis passes over a run's activation store, then
the decoder analyses, all written to RUN/features.sqlite."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from monosemantic.analysis.cooccur import cooccurrence_neighbours
from monosemantic.analysis.decoder import decoder_neighbours, model_logit_effects
from monosemantic.analysis.featuremap import (
    cluster_map,
    feature_tokens,
    label_clusters,
    umap_xy,
)
from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.config import to_dict
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.progress import progress


@dataclass(kw_only=True)
class AnalyzeConfig(PassOptions):
    """Analyse every feature of a trained SAE and write the feature database RUN/features.sqlite."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (holds sae/ with monosemantic.json)."""
    rows: Literal["all", "holdout", "train"] = "all"
    """Store rows to analyse: all of them, the run's held-out rows, or its training rows."""
    n_tokens: int = 0
    """Analyse only the first this many rows of that range; 0 = all."""
    batch_size: int = 4096
    """Store rows per SAE encode."""
    logit_tokens: int = 10
    """Tokens listed per feature for the top and bottom logit effects; 0 skips them (and
    loading the model: tokens are then shown as ids)."""
    neighbours: int = 10
    """Nearest features by decoder cosine kept per feature; 0 skips them."""
    exact_neighbours_max: int = 32768
    """Largest dictionary whose decoder-cosine neighbours are computed exactly (O(F²·d));
    larger ones use an approximate NN-descent index (pynndescent, comes with umap-learn)."""
    feature_map: bool = True
    """Compute a 2-D UMAP map of the decoder directions with k-means clusters and labels (needs
    umap-learn and scikit-learn; skipped without them)."""
    n_clusters: int = 0
    """Clusters on the feature map; 0 = round(sqrt(F) / 2) between 2 and 200."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    store: Path | None = None
    """Activation store to read instead of the one recorded with the SAE (e.g. it moved)."""
    model: str | None = None
    """Model spec to load instead of the one recorded with the SAE (tokenizer, unembedding)."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if self.store is not None:
            self.store = Path(self.store)


def _row_range(cfg: AnalyzeConfig, extra: dict[str, Any], n_rows: int) -> range:
    start, stop = (int(v) for v in extra.get("holdout_rows") or (n_rows, n_rows))
    if cfg.rows == "holdout":
        rows = range(start, stop)
    elif cfg.rows == "train":
        rows = range(start)
    else:
        rows = range(n_rows)
    if cfg.n_tokens > 0:
        rows = range(rows.start, min(rows.stop, rows.start + cfg.n_tokens))
    if len(rows) == 0:
        raise UserError(f"no {cfg.rows} rows to analyse in the store; try --rows all")
    return rows


def analyze(cfg: AnalyzeConfig) -> Path:
    """Run both passes and the decoder analyses; write and return RUN/features.sqlite."""
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.evals.report import read_run
    from monosemantic.sae import load_sae
    from monosemantic.store.schema import DB_FILENAME
    from monosemantic.store.writer import write_feature_db

    sae_dir, extra = read_run(cfg.run)
    store_path = cfg.store or extra.get("store")
    if store_path is None or not Path(store_path).exists():
        raise UserError(f"activation store {store_path} not found: give the store of the SAE's "
                        "model and hook with --store")
    store = ActivationStore(store_path)
    device = resolve_device(cfg.device)
    sae = load_sae(sae_dir, device=str(device))
    if store.hook != extra["hook"] or store.d != int(sae.cfg.d_in):
        raise UserError(f"store {store_path} holds {store.hook!r} (width {store.d}); the SAE reads "
                        f"{extra['hook']!r} (width {sae.cfg.d_in}): give its store with --store")
    cfg.validate(cfg.batch_size)
    rows = _row_range(cfg, extra, store.n_rows)
    n_feat = int(sae.cfg.n_features)
    passes = 2 if cfg.n_intervals > 0 else 1
    bar = progress(total=passes * len(rows), desc="analyse", unit="tok")
    start = time.perf_counter()
    with bar, torch.no_grad():
        analysis = analyze_batches(
            lambda: store.iter_rows(cfg.batch_size, rows=rows),
            lambda x_BD: sae.encode(x_BD.to(device)), n_feat, cfg, first_row=rows.start,
            on_batch=bar.update)
    seconds = time.perf_counter() - start
    W_dec_FD = sae.W_dec_FD.detach()
    decode_token, logits = None, None
    if cfg.logit_tokens > 0:
        from monosemantic.models import load_model

        lm = load_model(cfg.model or extra["model"], device=str(device))
        logits = model_logit_effects(lm, extra["hook"], W_dec_FD, cfg.logit_tokens)
        tokenizer = lm.tokenizer
        decode_token = lambda t: tokenizer.decode([t])
    neighbours = (decoder_neighbours(W_dec_FD.cpu(), cfg.neighbours, cfg.exact_neighbours_max,
                                     cfg.seed) if cfg.neighbours > 0 else None)
    cooccur = None
    if analysis.cooccur is not None and importlib.util.find_spec("scipy") is None:
        print("co-occurrence neighbours skipped: scipy is not installed (pip install scipy)")
    elif analysis.cooccur is not None:
        ids_FM, scores_FM, _counts = cooccurrence_neighbours(
            *analysis.cooccur.entries(), n_feat, cfg.cooccur_neighbours, cfg.cooccur_min_count)
        cooccur = (ids_FM, scores_FM)
    coords, clusters = None, None
    if cfg.feature_map:
        coords, clusters = feature_map(W_dec_FD.cpu(), analysis, logits, decode_token,
                                       cfg.n_clusters, cfg.seed)
    meta = {"run": str(cfg.run), "sae": str(sae_dir), "store": str(store_path),
            "model": cfg.model or extra["model"], "hook": extra["hook"],
            "architecture": sae.cfg.architecture, "rows": [rows.start, rows.stop],
            "pass_seconds": seconds, "pass_state_bytes": analysis.nbytes(),
            "config": to_dict(cfg)}
    path = write_feature_db(cfg.run / DB_FILENAME, analysis, meta, decode_token, logits,
                            neighbours, coords, cooccur, clusters)
    alive = int((analysis.count_F > 0).sum())
    print(f"analysed {analysis.n_tokens:,} tokens x {n_feat:,} features in {seconds:.1f} s "
          f"({passes} pass{'es' if passes > 1 else ''}, state {analysis.nbytes() / 2**20:.1f} MiB); "
          f"{alive:,} features fired")
    print(f"wrote {path}")
    return path


def feature_map(W_dec_FD: torch.Tensor, analysis, logits, decode_token, n_clusters: int = 0,
                seed: int = 0):
    """((xy [F, 2], cluster [F]), cluster labels) from UMAP on the decoder directions and k-means
    on the map, or (None, None) without umap-learn."""
    xy_F2 = umap_xy(W_dec_FD, seed)
    if xy_F2 is None:
        return None, None
    cluster_F = cluster_map(xy_F2, n_clusters, seed)
    tokens_F = feature_tokens(analysis.top.tokens_GRW, analysis.top.offset_GR,
                              logits.top_ids_FT if logits is not None else None)
    return (xy_F2, cluster_F), label_clusters(cluster_F, tokens_F, decode_token)
