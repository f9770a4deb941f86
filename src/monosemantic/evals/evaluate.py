"""`evaluate_sae`: reconstruction metrics on held-out store rows, then the spliced-in model loss
on fresh contexts from the store's corpus (documents the harvest never reached)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.errors import UserError
from monosemantic.evals.loss import LOSS_FORMULAS
from monosemantic.evals.metrics import (
    DENSITY_FORMULA,
    FVE_FORMULA,
    L0_FORMULA,
    NMSE_FORMULA,
    FeatureDensityAccumulator,
    ReconstructionAccumulator,
)
from monosemantic.evals.spliced import spliced_loss
from monosemantic.progress import progress

if TYPE_CHECKING:
    from monosemantic.activations import ActivationStore
    from monosemantic.data import Context
    from monosemantic.models import HookPoint, LoadedModel
    from monosemantic.sae import SAE


def reconstruction_pass(
    sae: SAE,
    store: ActivationStore,
    rows: range,
    row_batch_size: int = 4096,
    dense_threshold: float = 0.1,
    device: str | torch.device = "cpu",
    target_store: ActivationStore | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of `sae` on store rows `rows` (raw activations, corpus order) and the
    log10-density histogram. The SAE must read raw activations (as saved SAEs do). A
    transcoder reads `store` and is scored on the same rows of `target_store`."""
    if len(rows) == 0:
        raise UserError("no held-out rows to evaluate on: train with --holdout-fraction > 0")
    recon = ReconstructionAccumulator()
    density = FeatureDensityAccumulator(int(sae.W_dec_FD.shape[0]), dense_threshold=dense_threshold)
    bar = progress(total=len(rows), desc="reconstruction", unit="tok")
    inputs = store.iter_batches(row_batch_size, shuffle=False, rows=rows)
    targets = (inputs if target_store is None
               else target_store.iter_batches(row_batch_size, shuffle=False, rows=rows))
    pairs = ((x, x) for x in inputs) if target_store is None else zip(inputs, targets)
    with torch.no_grad(), bar:
        for x_ND, y_ND in pairs:
            x_ND, y_ND = x_ND.to(device), y_ND.to(device)
            f_NF = sae.encode(x_ND)
            x_hat_ND = sae.add_skip(sae.decode(f_NF), x_ND)
            recon.update(y_ND, x_hat_ND, f_NF)
            density.update(f_NF)
            bar.update(x_ND.shape[0])
    return {**recon.result(), **density.result()}, density.log10_histogram()


def harvested_doc_limit(store: ActivationStore, tail_rows: int = 65536) -> int:
    """Largest document id in the store: documents up to it were (partly) harvested.

    Rows are in corpus order, so the answer lies among the last rows; rows that belong to no
    document (doc id -1: inserted BOS, padding) are skipped.
    """
    n = int(store.n_rows)
    last = -1
    for batch in store.iter_rows(tail_rows, rows=range(max(0, n - tail_rows), n)):
        last = max(last, int(batch.doc_ids_N.max()))
    if last < 0 and n > tail_rows:  # only doc-less rows at the end (unusual): scan everything
        for batch in store.iter_rows(tail_rows):
            last = max(last, int(batch.doc_ids_N.max()))
    return last


def fresh_contexts(store: ActivationStore, tokenizer: Any, n_contexts: int,
                   ctx_len: int | None = None) -> Iterator[Context]:
    """Up to `n_contexts` full contexts from the store's corpus, starting after the last
    harvested document (the corpus config and ctx_len come from the store's manifest)."""
    from monosemantic.config import from_dict
    from monosemantic.data import CorpusConfig, iter_documents, pack_contexts

    corpus = (store.manifest.get("corpus") or {}).get("config")
    if not isinstance(corpus, dict):
        raise UserError(f"the store {store.path} does not record its corpus config (harvested by "
                        "an older version?): re-harvest it, or run with --n-contexts 0 to skip "
                        "the spliced-loss evaluation")
    ctx_len = int(ctx_len or store.ctx_len or 256)
    limit = harvested_doc_limit(store)
    documents = (doc for doc in iter_documents(from_dict(CorpusConfig, corpus))
                 if doc.doc_id > limit)
    # pad_last=False: a padded tail would score pad predictions and skew the loss.
    contexts = pack_contexts(tokenizer, documents, ctx_len=ctx_len, pad_last=False)
    return itertools.islice(contexts, n_contexts)


def unspliced_ids(store: ActivationStore, lm: LoadedModel) -> list[int] | None:
    """Token ids left unspliced: those the harvest excluded (BOS and other special tokens)."""
    ids = store.manifest.get("special_token_ids") if store.manifest.get("exclude_special") else None
    return list(ids) if ids else None  # None: the tokenizer's special tokens


def evaluate_sae(
    lm: LoadedModel | None,
    sae: SAE,
    hook: str | HookPoint,
    store: ActivationStore,
    rows: range | None = None,
    n_tokens: int = 0,
    n_contexts: int = 32,
    batch_size: int = 2,
    row_batch_size: int = 4096,
    dense_threshold: float = 0.1,
    contexts: Iterable[Context] | None = None,
    transcoder: tuple[str, ActivationStore] | None = None,
) -> dict[str, Any]:
    """Evaluate a (raw-activation) SAE: reconstruction and sparsity on store rows, then the
    model's loss with the SAE spliced in at `hook`.

    rows: store rows to evaluate on (default: all); `n_tokens` > 0 keeps only the first that
    many of them. n_contexts: fresh corpus contexts for the spliced loss (0 skips it);
    `contexts` may supply them instead (an iterable of `Context`). Returns a JSON-ready dict
    with `metrics` (flat), `density_histogram`, `sizes` and `formulas`.

    A transcoder reads `hook` (rows of `store`) and predicts another site: `transcoder` is
    (that site's hook, its store of the same rows); its metrics are the target's, and the
    spliced loss replaces the target hook by the prediction from `hook` of the same forward.
    """
    from monosemantic.data import batch_contexts

    hook_name = hook if isinstance(hook, str) else getattr(hook, "name", None) or store.hook
    rows = range(int(store.n_rows)) if rows is None else rows
    if n_tokens > 0:
        rows = range(rows.start, min(rows.stop, rows.start + n_tokens))
    device = next(iter(sae.parameters())).device
    hook_out, target_store = (None, None) if transcoder is None else transcoder
    metrics, histogram = reconstruction_pass(sae, store, rows, row_batch_size, dense_threshold,
                                             device, target_store)
    sizes: dict[str, Any] = {"reconstruction_rows": [rows.start, rows.stop],
                             "reconstruction_tokens": len(rows)}
    if n_contexts > 0:
        if lm is None:
            raise UserError("the spliced-loss evaluation needs the model: pass lm, or n_contexts=0")
        if contexts is None:
            contexts = fresh_contexts(store, lm.tokenizer, n_contexts)
        contexts = list(itertools.islice(contexts, n_contexts))
        if not contexts:
            raise UserError("the store's corpus has no text left after the harvested documents, "
                            "so there are no fresh contexts: evaluate with --n-contexts 0, or "
                            "harvest fewer tokens than the corpus holds")
        n_ctx_tokens = sum(int(c.tokens.numel()) for c in contexts)
        bar = progress(total=n_ctx_tokens, desc="spliced loss", unit="tok")
        with bar:
            loss = spliced_loss(lm, sae, hook_name if hook_out is None else hook_out,
                                batch_contexts(contexts, batch_size),
                                keep_token_ids=unspliced_ids(store, lm), on_batch=bar.update,
                                hook_in=None if hook_out is None else hook_name)
        metrics.update(loss)
        sizes.update(spliced_contexts=len(contexts), spliced_tokens=n_ctx_tokens,
                     spliced_predictions=loss["n_predictions"])
    return {
        "hook": hook_name,
        **({} if hook_out is None else {"hook_out": hook_out}),
        "metrics": metrics,
        "density_histogram": histogram,
        "sizes": sizes,
        "formulas": {"nmse": NMSE_FORMULA, "variance_explained": FVE_FORMULA, "l0": L0_FORMULA,
                     "density": DENSITY_FORMULA, **LOSS_FORMULAS},
    }
