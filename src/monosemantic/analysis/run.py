"""`monosemantic analyze RUN`: the feature analysis passes over a run's activation store, then
the decoder analyses, all written to RUN/features.sqlite."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from monosemantic.analysis.cooccur import cooccurrence_neighbours
from monosemantic.analysis.decoder import LogitEffects, decoder_neighbours, model_logit_effects
from monosemantic.analysis.featuremap import (
    cluster_map,
    feature_tokens_from_peaks,
    label_clusters,
    umap_xy,
)
from monosemantic.analysis.onepass import PassOptions
from monosemantic.analysis.slices import SlicedAnalysis, analyze_sliced, choose_slice
from monosemantic.analysis.sources import RowSource, store_rows, text_rows, text_settings
from monosemantic.config import ConfigError, to_dict
from monosemantic.console import redirected, say
from monosemantic.data import CorpusConfig
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import ModelOptions, RunDir

if TYPE_CHECKING:
    from monosemantic.featuredb.writer import FeatureDBWriter
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE


@dataclass(kw_only=True)
class AnalyzeConfig(PassOptions):
    """Analyse every feature of a trained SAE and write the feature database RUN/features.sqlite."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder); features.sqlite is written in the run. A
    pretrained SAE folder (or hf:OWNER/REPO/FOLDER) is analysed in its run view
    (docs/pretrained.md; it has no store: give --text)."""
    rows: Literal["all", "holdout", "train"] = "all"
    """Store rows to analyse: all of them, the run's held-out rows, or its training rows."""
    n_tokens: int = 0
    """Analyse only the first this many rows of that range (with --text: tokens of the text);
    0 = all."""
    text: str | None = None
    """Analyse fresh text run through the model instead of the store: a corpus source as
    harvest's --corpus.source (local-python, local-prose, local-mixed, a .txt/.jsonl/.parquet
    file or folder, hf:NAME), read as --corpus.* says; --n-tokens caps it (0 = the whole
    corpus). Contexts are packed as the SAE's store was harvested (ctx_len, special tokens left
    out) when its manifest is still there, else as harvest's defaults; the store itself is not
    needed. Costs one model forward over the text per pass (two passes unless
    --n-intervals 0)."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """With --text: how it is read into documents, as harvest's --corpus (give the store's
    options to get its documents); the source is --text."""
    batch_size: int = 4096
    """Rows per SAE encode."""
    feature_slice: int = 0
    """Analyse the features in consecutive slices of this many: each slice runs both passes
    over the same rows with the encode restricted to it and is written before the next, so the
    pass state is that of one slice (the database is the same). Costs: the rows are read once
    per slice and pass; relu, jumprelu and trained batchtopk compute only the slice's encoder
    columns, topk the full encode per slice. 0 = all at once, unless the estimate exceeds
    --max-pass-memory."""
    max_pass_memory: float = 8.0
    """GiB the pass may use when --feature-slice is 0: if the estimate for all features,
    F·(state per feature + 8·rows per encode call) bytes (analysis/slices.py), exceeds it, the
    largest slices within it are used; 0 = always all at once."""
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
    feature_map_max: int = 262144
    """Largest dictionary mapped: above it the map is skipped. UMAP of a 1M-feature decoder
    (its NN-descent graph, spectral initialisation, 200 layout epochs over ~15·F edges, copies
    of the F x d decoder) is a long CPU job, tens of minutes to hours on a few cores (not
    measured). Raise it to force the map; 0 = no limit."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    store: Path | None = None
    """Activation store to read instead of the one recorded with the SAE (e.g. it moved); with
    --text only its harvest settings are read."""
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata={"short_flags": True})
    """The model to load instead of the run's, and a pretrained SAE folder's hooks (also
    spelled without `model-options.`: --model, --hook, --hook-out)."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if self.store is not None:
            self.store = Path(self.store)
        # --corpus.source would be a second way to name the text; only the default passes.
        if self.corpus.source not in (CorpusConfig.source, self.text):
            raise ConfigError(f"give the text to analyse with --text {self.corpus.source} "
                              "(--corpus.* only says how it is read)")
        if self.text is not None:
            self.corpus = dataclasses.replace(self.corpus, source=self.text)

    def validate(self, batch_size: int) -> None:
        super().validate(batch_size)
        for name in ("feature_slice", "max_pass_memory", "feature_map_max"):
            if not getattr(self, name) >= 0:
                raise UserError(f"{name} must be >= 0 (0 = automatic / no limit), got "
                                f"{getattr(self, name)}")


def _row_source(cfg: AnalyzeConfig, run: RunDir, device: torch.device,
                lm: LoadedModel | None = None) -> tuple[RowSource, LoadedModel | None]:
    """The rows to analyse, and the model when they needed it (reused for the logit effects);
    `lm`, when given, is used instead of loading one."""
    if cfg.text is None:
        store = run.store(cfg.store, alternative="analyse fresh text run through the model "
                          "with --text (e.g. --text local-python --n-tokens 1000000)")
        return store_rows(store, cfg.rows, run.holdout_rows, cfg.n_tokens, cfg.batch_size), None
    if cfg.rows != "all":
        raise UserError("--rows picks store rows; with --text the rows are the text's first "
                        "--n-tokens tokens")
    settings = text_settings(run.extra, cfg.store or run.store_path)
    if lm is None:
        lm = run.load_model(device, dtype=settings.torch_dtype, spec=cfg.model_options.model)
    say(f"analysing {cfg.corpus.describe()} through {lm.spec} (ctx_len {settings.ctx_len}, "
        f"special tokens {'left out' if settings.exclude_special else 'kept'}, as "
        f"{settings.taken_from})")
    return text_rows(lm, cfg.corpus, run.hook, run.d_in, settings, cfg.n_tokens,
                     cfg.batch_size, device), lm


def analyze(cfg: AnalyzeConfig, lm: LoadedModel | None = None) -> Path:
    """Run both passes and the decoder analyses; write and return RUN/features.sqlite.

    `lm`: the run's model already loaded (for text rows and logit effects), else loaded when
    needed. Under torchrun the ranks share the feature slices (`analysis.ranks`); rank 0
    alone prints."""
    from monosemantic.distributed import process_group
    from monosemantic.featuredb.writer import FeatureDBWriter

    with process_group(resolve_device(cfg.device)) as (ranks, device):
        if ranks.active:
            from monosemantic.analysis.ranks import analyze_ranks

            with contextlib.nullcontext() if ranks.is_main else redirected(None):
                return analyze_ranks(cfg, ranks, device, lm)
        run, sae, source, lm = open_inputs(cfg, device, lm)
        # Published by `finish` only; an error on the way leaves no database.
        with FeatureDBWriter(run.db_path) as writer:
            return _analyze_into(writer, cfg, sae, run, source, lm, device)


def open_inputs(cfg: AnalyzeConfig, device: torch.device, lm: LoadedModel | None = None
                ) -> tuple[RunDir, SAE, RowSource, LoadedModel | None]:
    """The run, its SAE on `device`, the rows to analyse, and the model if those needed it."""
    run = cfg.model_options.open(cfg.run)
    cfg.validate(cfg.batch_size)
    sae = run.load_sae(device)
    source, lm = _row_source(cfg, run, device, lm)
    return run, sae, source, lm


def pass_options(cfg: AnalyzeConfig, sae: SAE, device: torch.device) -> PassOptions:
    """`cfg`'s pass options as they apply to `sae` on `device`."""
    # An SAE whose codes depend on the whole batch (untrained batchtopk) is encoded per batch.
    opts = (cfg if sae.rows_independent
            else dataclasses.replace(cfg, encode_rows=cfg.batch_size))
    if cfg.encode_workers == 0 and device.type != "cpu":
        # A GPU runs each encode on its own; CPU workers would only queue kernels.
        opts = dataclasses.replace(opts, encode_workers=1)
    return opts


def _analyze_into(writer: FeatureDBWriter, cfg: AnalyzeConfig, sae: SAE, run: RunDir,
                  source: RowSource, lm: LoadedModel | None, device: torch.device) -> Path:
    """The passes, slice by slice into `writer`, then the decoder analyses; publishes."""
    n_feat = int(sae.cfg.n_features)
    opts = pass_options(cfg, sae, device)
    size = choose_slice(n_feat, cfg.feature_slice, cfg.max_pass_memory * 2**30, opts,
                        cfg.batch_size)
    n_slices = -(-n_feat // size)
    passes = 2 if cfg.n_intervals > 0 else 1
    if n_slices > 1:
        say(f"analysing {n_feat:,} features in {n_slices} slices of {size:,} (the rows are "
            f"read {n_slices} x {passes} times)")
    # Text without --n-tokens: its length is known only at its end.
    bar = progress(total=(passes * n_slices * source.max_rows if source.max_rows is not None
                          else None), desc="analyse", unit="tok")
    start = time.perf_counter()
    with bar, torch.no_grad():
        analysis = analyze_sliced(
            source.make_batches, lambda x_BD, lo, hi: sae.encode_sparse(x_BD.to(device), lo, hi),
            n_feat, size, opts, first_row=source.first_row, on_batch=bar.update,
            on_slice=writer.add)
    return finish_database(writer, cfg, sae, run, source, lm, device, analysis,
                           time.perf_counter() - start)


def finish_database(writer: FeatureDBWriter, cfg: AnalyzeConfig, sae: SAE, run: RunDir,
                    source: RowSource, lm: LoadedModel | None, device: torch.device,
                    analysis: SlicedAnalysis, seconds: float) -> Path:
    """The analyses of the whole dictionary (logit effects, decoder and co-occurrence
    neighbours, the map) and the meta, once every slice is in `writer`; publishes."""
    n_feat, size, n_slices = analysis.n_features, analysis.slice_size, analysis.n_slices
    passes = 2 if cfg.n_intervals > 0 else 1
    W_dec_FD = sae.W_dec_FD.detach()
    decode_token, logits = None, None
    if cfg.logit_tokens > 0:
        if lm is None:
            lm = run.load_model(device, spec=cfg.model_options.model)
        # A transcoder's decoder rows are directions at its output site, whose direct path
        # to the logits this is (the input site's would not be).
        logits = model_logit_effects(lm, run.decoder_hook, W_dec_FD, cfg.logit_tokens)
        decode_token = _token_decoder(lm)
    neighbours = (decoder_neighbours(W_dec_FD.cpu(), cfg.neighbours, cfg.exact_neighbours_max,
                                     cfg.seed) if cfg.neighbours > 0 else None)
    cooccur = None
    entries = analysis.cooccur_entries()
    if entries is not None and importlib.util.find_spec("scipy") is None:
        say("co-occurrence neighbours skipped: scipy is not installed (pip install scipy)")
    elif entries is not None:
        ids_FM, scores_FM, _counts = cooccurrence_neighbours(
            *entries, n_feat, cfg.cooccur_neighbours, cfg.cooccur_min_count)
        cooccur = (ids_FM, scores_FM)
    coords, clusters = None, None
    if cfg.feature_map and 0 < cfg.feature_map_max < n_feat:
        say(f"feature map skipped: {n_feat:,} features > --feature-map-max "
            f"{cfg.feature_map_max:,} (raise it to map them; slow on CPU)")
    elif cfg.feature_map:
        coords, clusters = feature_map(W_dec_FD.cpu(), analysis, logits, decode_token,
                                       cfg.n_clusters, cfg.seed)
    # source.meta: "store" (its path) or "text" (the corpus description) and its settings.
    meta = {"run": str(run.path), "sae": str(run.sae_dir), **source.meta,
            "model": cfg.model_options.model or run.model, "hook": run.hook,
            **({} if run.hook_out is None else {"hook_out": run.hook_out}),
            "architecture": sae.cfg.architecture,
            "rows": [source.first_row, source.first_row + analysis.n_tokens],
            "pass_seconds": seconds, "pass_state_bytes": analysis.state_bytes,
            "feature_slice": size, "config": to_dict(cfg)}
    path = writer.finish(meta, decode_token, logits, neighbours, coords, cooccur, clusters)
    alive = int((analysis.count_F > 0).sum())
    slices = f" x {n_slices} slices" if n_slices > 1 else ""
    say(f"analysed {analysis.n_tokens:,} tokens x {n_feat:,} features in {seconds:.1f} s "
        f"({passes} pass{'es' if passes > 1 else ''}{slices}, state "
        f"{analysis.state_bytes / 2**20:.1f} MiB{' per slice' if slices else ''}); "
        f"{alive:,} features fired, {n_feat - alive:,} never fired in these tokens")
    say(f"wrote {path}")
    return path


def feature_map(W_dec_FD: torch.Tensor, analysis: SlicedAnalysis, logits: LogitEffects | None,
                decode_token: Callable[[int], str] | None, n_clusters: int = 0, seed: int = 0
                ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, list[dict] | None]:
    """((xy [F, 2], cluster [F]), cluster labels) from UMAP on the decoder directions and k-means
    on the map, or (None, None) without umap-learn."""
    xy_F2 = umap_xy(W_dec_FD, seed)
    if xy_F2 is None:
        return None, None
    cluster_F = cluster_map(xy_F2, n_clusters, seed)
    tokens_F = feature_tokens_from_peaks(analysis.peaks_FR,
                                         logits.top_ids_FT if logits is not None else None)
    return (xy_F2, cluster_F), label_clusters(cluster_F, tokens_F, decode_token)


def _token_decoder(lm: LoadedModel) -> Callable[[int], str]:
    """One token id to its text, through the model's tokenizer."""
    tokenizer = lm.tokenizer

    def decode_token(token: int) -> str:
        return tokenizer.decode([token])

    return decode_token
