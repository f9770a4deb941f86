"""`monosemantic crosscoder-eval RUN`: a trained crosscoder on its held-out rows, per site, and
(for sites of one model) each site's reconstruction spliced into the model; for two sites the
model-diffing figures. Writes RUN/crosscoder_eval.json, and for two sites RUN/crosscoder_diff.json
and RUN/crosscoder_diff.png (docs/crosscoders.md)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.evals.crosscoder_diff import model_diff, plot_diff, site_shares
from monosemantic.evals.loss import LOSS_FORMULAS, SplicedLossAccumulator
from monosemantic.evals.metrics import FVE_FORMULA, NMSE_FORMULA
from monosemantic.evals.report import row_span
from monosemantic.fsutil import atomic_write_text, json_ready
from monosemantic.sae.crosscoder import LoadedCrosscoder, load_crosscoder
from monosemantic.train.metrics import ReconstructionSums

if TYPE_CHECKING:
    from monosemantic.activations import ActivationStore
    from monosemantic.models import LoadedModel

EVAL_FILENAME = "crosscoder_eval.json"
DIFF_FILENAME = "crosscoder_diff.json"
DIFF_PLOT_FILENAME = "crosscoder_diff.png"


@dataclass
class CrosscoderEvalConfig:
    """Evaluate a trained crosscoder per site; diff its two models (two sites)."""

    run: Path = field(metadata={"positional": True})
    """Crosscoder training run (or its sae/ folder); the outputs are written in the run."""
    n_tokens: int = 0
    """Held-out rows (tokens) scored per site; 0 = all held-out rows."""
    n_contexts: int = 16
    """Fresh corpus contexts for each site's spliced-in loss (sites of one model only); 0
    skips it (no model is loaded then)."""
    batch_size: int = 2
    """Contexts per model forward."""
    row_batch_size: int = 4096
    """Store rows per crosscoder forward."""
    rows: str | None = None
    """Store rows START:STOP scored instead of the run's held-out rows (e.g. a run trained
    with --holdout-fraction 0, on other stores given with --stores)."""
    stores: tuple[Path, ...] = ()
    """One store per site, in the crosscoder's site order, instead of those it recorded."""
    model: str | None = None
    """Model spec to load instead of the recorded one (spliced loss)."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    exclusive_threshold: float = 0.1
    """Model diffing: a feature is A-only when its relative decoder norm is >= 1 - this,
    B-only when <= this, shared otherwise."""
    plot: bool = True
    """Write RUN/crosscoder_diff.png for two sites (needs matplotlib)."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        self.stores = tuple(Path(p) for p in self.stores)


def site_stores(xc: LoadedCrosscoder, override: tuple[Path, ...] = ()) -> list[ActivationStore]:
    """The sites' stores (recorded, or `override`), each checked against its site's width;
    every store must hold the same tokens row for row."""
    from monosemantic.activations import ActivationStore
    from monosemantic.train.sites import check_same_rows

    paths = list(override) if override else [s.store for s in xc.sites]
    if len(paths) != len(xc.sites):
        raise UserError(f"--stores gives {len(paths)} stores for the crosscoder's "
                        f"{len(xc.sites)} sites ({', '.join(s.label for s in xc.sites)})")
    stores = []
    for site, path in zip(xc.sites, paths):
        if path is None or not Path(path).is_dir():
            raise UserError(f"the store of site {site.label} ({path}) is missing: give the "
                            "sites' stores with --stores")
        store = ActivationStore(path)
        if store.d != site.d:
            raise UserError(f"{path} has width {store.d} but site {site.label} of the "
                            f"crosscoder has width {site.d}: give that site's store")
        stores.append(store)
    check_same_rows(stores)
    return stores


@torch.no_grad()
def site_reconstruction(xc: LoadedCrosscoder, stores: list[ActivationStore], rows: range,
                        row_batch_size: int = 4096) -> dict[str, Any]:
    """NMSE, variance explained and MSE per site (raw activations), and the L0 of the codes."""
    device = xc.sae.W_dec.device
    sums = [ReconstructionSums(s.d, device) for s in xc.sites]
    active, n_rows = 0.0, 0
    readers = [st.iter_batches(row_batch_size, shuffle=False, rows=rows) for st in stores]
    for parts in zip(*readers):
        x_BD = torch.cat(parts, dim=1).to(device)
        f_BF = xc.sae.encode(x_BD)
        x_hat_BD = xc.sae.decode(f_BF)
        lo = 0
        for site, acc in zip(xc.sites, sums):
            acc.add(x_BD[:, lo:lo + site.d], x_hat_BD[:, lo:lo + site.d],
                    torch.zeros((), device=device))
            lo += site.d
        active += float((f_BF != 0).sum())
        n_rows += x_BD.shape[0]
    per_site = {}
    for site, acc in zip(xc.sites, sums):
        result = acc.result()
        result.pop("l0", None)
        per_site[site.label] = result
    return {"sites": per_site, "l0": active / max(n_rows, 1), "rows": n_rows}


@torch.no_grad()
def spliced_loss_per_site(lm: LoadedModel, xc: LoadedCrosscoder, batches: Any,
                          keep_token_ids: list[int]) -> dict[str, dict[str, float | int]]:
    """Each site's CE clean / spliced / zero-ablated, loss recovered and KL: the codes are
    computed from every site's activations of the clean forward, then one site at a time is
    replaced by its reconstruction (other sites keep their activations)."""
    from monosemantic.evals.loss import ce_and_kl, next_token_targets
    from monosemantic.models import capture, edit

    hooks = [s.hook for s in xc.sites]
    accs = {h: SplicedLossAccumulator() for h in hooks}
    sae_device = xc.sae.W_dec.device
    for batch in batches:
        tokens_BS = batch.tokens.to(lm.device)
        keep = torch.tensor(keep_token_ids, dtype=tokens_BS.dtype, device=tokens_BS.device)
        splice_BS = ~torch.isin(tokens_BS, keep)
        acts = capture(lm, tokens_BS, hooks)
        x_BSD = torch.cat([acts[h] for h in hooks], dim=-1)
        flat_ND = x_BSD.reshape(-1, x_BSD.shape[-1]).to(sae_device, torch.float32)
        x_hat_BSD = xc.sae.decode(xc.sae.encode(flat_ND)).reshape(x_BSD.shape)
        parts = torch.split(x_hat_BSD.to(x_BSD.device, x_BSD.dtype),
                            [s.d for s in xc.sites], dim=-1)
        targets_BS, score_BS = next_token_targets(tokens_BS, splice_BS)
        score_BS[:, :-1] &= splice_BS[:, 1:]  # predictions of special tokens are not scored
        clean_BSV = lm.model(input_ids=tokens_BS, use_cache=False).logits
        for hook, part_BSD in zip(hooks, parts):
            # At most two [B, S, V] logits alive at once, as `eval` keeps it.
            with edit(lm, {hook: _replace_where(splice_BS, None)}):
                zero_BSV = lm.model(input_ids=tokens_BS, use_cache=False).logits
            ce_zero_BS, _, _ = ce_and_kl(zero_BSV, None, targets_BS)
            del zero_BSV
            with edit(lm, {hook: _replace_where(splice_BS, part_BSD)}):
                spliced_BSV = lm.model(input_ids=tokens_BS, use_cache=False).logits
            ce_clean_BS, ce_spliced_BS, kl_BS = ce_and_kl(clean_BSV, spliced_BSV, targets_BS)
            del spliced_BSV
            accs[hook].update(ce_clean_BS, ce_spliced_BS, ce_zero_BS, kl_BS, score_BS)
    return {s.label: accs[s.hook].result() for s in xc.sites}


def _replace_where(mask_BS: torch.Tensor, new_BSD: torch.Tensor | None):
    """Edit: `new_BSD` (None: zeros) where `mask_BS`, the activation elsewhere."""

    def fn(act_BSD: torch.Tensor) -> torch.Tensor:
        value = torch.zeros_like(act_BSD) if new_BSD is None else new_BSD
        return torch.where(mask_BS.unsqueeze(-1), value, act_BSD)

    return fn


def run_crosscoder_eval(cfg: CrosscoderEvalConfig, lm: LoadedModel | None = None
                        ) -> dict[str, Any]:
    """Evaluate the crosscoder of `cfg.run`; write its JSON (and diff) files in the run."""
    device = str(resolve_device(cfg.device))
    xc = load_crosscoder(cfg.run, device)
    run_dir = xc.path.parent if xc.path.name == "sae" else xc.path
    stores = site_stores(xc, cfg.stores)
    span = xc.extra.get("holdout_rows") or [0, stores[0].n_rows]
    rows = range(int(span[0]), int(span[1]))
    if cfg.rows is not None:
        rows = row_span(cfg.rows, stores[0].n_rows)
    if len(rows) == 0:
        raise UserError(f"{run_dir} held out no rows (--holdout-fraction 0): name the rows to "
                        "score with --rows START:STOP (on stores it never trained on, given "
                        "with --stores)")
    if cfg.n_tokens > 0:
        rows = range(rows.start, min(rows.stop, rows.start + cfg.n_tokens))
    result: dict[str, Any] = {
        "crosscoder": str(xc.path), "architecture": xc.sae.cfg.architecture,
        "n_features": int(xc.sae.cfg.n_features), "sites": [s.label for s in xc.sites],
        "rows": [rows.start, rows.stop], "config": to_dict(cfg),
        "reconstruction": site_reconstruction(xc, stores, rows, cfg.row_batch_size),
        "formulas": {"nmse": NMSE_FORMULA, "variance_explained": FVE_FORMULA,
                     **LOSS_FORMULAS}}
    models = {s.model for s in xc.sites}
    if cfg.n_contexts > 0 and len(models) == 1:
        result["spliced"] = _spliced(cfg, xc, stores[0], device, lm)
    elif cfg.n_contexts > 0:
        result["spliced_skipped"] = ("the sites belong to different models: each model's "
                                     "reconstruction needs both models' activations "
                                     "(not implemented)")
    result["decoder_shares"] = site_shares(xc, cfg.exclusive_threshold)
    for label, metrics in result["reconstruction"]["sites"].items():
        say(f"{label}: variance explained {metrics['variance_explained']:.4f}")
    if len(xc.sites) == 2:
        diff = model_diff(xc, cfg.exclusive_threshold)
        atomic_write_text(run_dir / DIFF_FILENAME, json.dumps(json_ready(diff), indent=2) + "\n")
        result["diff"] = {k: diff[k] for k in ("a_only", "b_only", "shared", "zero",
                                               "thresholds")}
        say(f"A-only {diff['a_only']}, B-only {diff['b_only']}, shared {diff['shared']}")
        say(f"wrote {run_dir / DIFF_FILENAME}")
        if cfg.plot and plot_diff(diff, run_dir / DIFF_PLOT_FILENAME) is not None:
            say(f"wrote {run_dir / DIFF_PLOT_FILENAME}")
    atomic_write_text(run_dir / EVAL_FILENAME, json.dumps(json_ready(result), indent=2) + "\n")
    say(f"wrote {run_dir / EVAL_FILENAME}")
    return result


def _spliced(cfg: CrosscoderEvalConfig, xc: LoadedCrosscoder, store: ActivationStore,
             device: str, lm: LoadedModel | None) -> dict[str, Any]:
    from monosemantic.data import batch_contexts
    from monosemantic.evals.evaluate import fresh_contexts, unspliced_ids
    from monosemantic.evals.spliced import special_token_ids
    from monosemantic.models import load_model

    if lm is None:
        lm = load_model(cfg.model or xc.sites[0].model, device=device, dtype=store.model_dtype)
    contexts = list(itertools.islice(fresh_contexts(store, lm.tokenizer, cfg.n_contexts),
                                     cfg.n_contexts))
    if not contexts:
        raise UserError("the store's corpus has no text left after the harvested documents: "
                        "evaluate with --n-contexts 0, or harvest fewer tokens")
    keep = unspliced_ids(store, lm) or special_token_ids(lm.tokenizer)
    return spliced_loss_per_site(lm, xc, batch_contexts(contexts, cfg.batch_size), keep)
