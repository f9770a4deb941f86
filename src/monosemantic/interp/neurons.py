"""`monosemantic neurons RUN`: the neuron baseline. Harvests a model's MLP neurons at the
SAE's layer (`blocks.L.mlp.hook_post`) over fresh documents of the SAE's corpus, and runs
the same feature analysis on them, with the positive part of each neuron's activation as its
"feature activation" (identity encoder + ReLU). The result is a feature database
(OUT/features.sqlite) that `explain` and `score` read like an SAE's, so "features are more
interpretable than neurons" is a measured comparison.

Logit effects of neuron i use its output direction, column i of the MLP's down projection,
multiplied by the gain of a post-MLP norm when the block has one (Gemma); that norm's
per-token division by the RMS is positive and does not change the ranking of tokens.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.config import from_dict, to_dict
from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.progress import progress

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel


@dataclass(kw_only=True)
class NeuronsConfig(PassOptions):
    """Build a feature database of MLP neurons (the autointerp baseline)."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder) of the SAE to compare with (its model, layer
    and corpus)."""
    hook: str | None = None
    """Neuron hook point (default: blocks.L.mlp.hook_post at the SAE's layer L)."""
    tokens: int = 50_000
    """Tokens to harvest and analyse."""
    corpus_seed: int = 1
    """Shuffle seed of the SAE's corpus (a seed other than the SAE's gives other documents)."""
    out: Path | None = None
    """Output directory (default RUN/neurons); gets features.sqlite."""
    batch_size: int = 4096
    """Rows per analysis batch."""
    logit_tokens: int = 10
    """Tokens listed per neuron for its top and bottom logit effects; 0 skips them."""
    neighbours: int = 10
    """Nearest neurons by cosine of their output directions; 0 skips them."""
    keep_store: bool = False
    """Keep the harvested activations (OUT/acts) after the analysis."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda, mps."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if self.out is not None:
            self.out = Path(self.out)


def neuron_directions(lm: LoadedModel, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_out [d_mlp, D]: each neuron's output direction, gain [D] of a post-MLP norm or None)."""
    from monosemantic.analysis.decoder import norm_gain
    from monosemantic.models.families import FAMILIES

    block = lm.model.get_submodule(f"{lm.blocks_path}.{layer}")
    weight = block.get_submodule(FAMILIES[lm.family].mlp_down).weight
    # The down projection (nn.Linear, or GPT-2's Conv1D) holds its matrix as a parameter.
    assert isinstance(weight, torch.Tensor)
    weight = weight.detach().float()
    # nn.Linear stores [out, in] = [D, d_mlp]; GPT-2's Conv1D stores [in, out].
    W_out = weight.T if weight.shape == (lm.d_model, lm.d_mlp) else weight
    norm = getattr(block, "post_feedforward_layernorm", None)
    gain = norm_gain(norm, lm.d_model)[0].float() if norm is not None else None
    return W_out, gain


def build_neuron_db(cfg: NeuronsConfig) -> Path:
    """Harvest, analyse and write OUT/features.sqlite; returns its path."""
    from monosemantic.activations.harvest import HarvestConfig, harvest_with
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.analysis.decoder import (
        final_norm,
        logit_effects,
        nearest_by_cosine,
        norm_gain,
        unembedding,
    )
    from monosemantic.data import CorpusConfig
    from monosemantic.featuredb.schema import DB_FILENAME
    from monosemantic.featuredb.writer import write_feature_db
    from monosemantic.runs import RunDir

    run = RunDir.open(cfg.run)
    out = cfg.out if cfg.out is not None else run.neurons_dir
    device = resolve_device(cfg.device)
    lm = run.load_model(device)
    layer = lm.hook_point(run.hook).layer
    hook = cfg.hook or f"blocks.{layer}.mlp.hook_post"
    point = lm.hook_point(hook)
    if point.kind != "mlp_post":
        raise UserError(f"{hook} is not an MLP neuron hook (blocks.L.mlp.hook_post)")
    sae_store = (ActivationStore(run.store_path) if run.store_path is not None
                 and run.store_path.exists() else None)
    corpus_cfg = dict(sae_store.manifest["corpus"]["config"]) if sae_store else {}
    corpus = from_dict(CorpusConfig, {**corpus_cfg, "seed": cfg.corpus_seed})
    ctx_len = int(sae_store.manifest["ctx_len"]) if sae_store else 256
    store_dir = out / "acts"
    harvest_with(lm, HarvestConfig(out=store_dir, model=run.model, hooks=(point.name,),
                                   tokens=cfg.tokens, corpus=corpus, ctx_len=ctx_len,
                                   dtype="float32", device=str(device)))
    store = ActivationStore(store_dir)
    cfg.validate(cfg.batch_size)
    passes = 2 if cfg.n_intervals > 0 else 1
    start = time.perf_counter()
    with progress(total=passes * store.n_rows, desc="analyse neurons", unit="tok") as bar, \
            torch.no_grad():
        analysis = analyze_batches(lambda: store.iter_rows(cfg.batch_size),
                                   lambda x_BD: x_BD.float().clamp_min(0.0), store.d, cfg,
                                   on_batch=bar.update)
    seconds = time.perf_counter() - start
    W_out_ND, gain_D = neuron_directions(lm, point.layer)
    logits = None
    if cfg.logit_tokens > 0:
        final_gain_D, centre = norm_gain(final_norm(lm.model), lm.d_model)
        dirs_ND = W_out_ND if gain_D is None else W_out_ND * gain_D
        W_U_VD = unembedding(lm.model)
        if W_U_VD is None:
            raise UserError(f"{lm.spec} has no output embedding: give --logit-tokens 0")
        logits = logit_effects(dirs_ND, W_U_VD, final_gain_D, centre, cfg.logit_tokens)
    neighbours = nearest_by_cosine(W_out_ND, cfg.neighbours) if cfg.neighbours > 0 else None
    meta = {"run": str(run.path), "kind": "neurons", "model": run.model, "hook": point.name,
            "sae_hook": run.hook, "store": str(store_dir), "rows": [0, store.n_rows],
            "pass_seconds": seconds, "encoder": "relu(identity)", "config": to_dict(cfg)}
    tokenizer = lm.tokenizer
    path = write_feature_db(out / DB_FILENAME, analysis, meta,
                            lambda t: tokenizer.decode([t]), logits, neighbours, None)
    if not cfg.keep_store:
        shutil.rmtree(store_dir)
    alive = int((analysis.count_F > 0).sum())
    say(f"analysed {analysis.n_tokens:,} tokens x {store.d:,} neurons of {point.name} in "
        f"{seconds:.1f} s; {alive:,} neurons fired; wrote {path}")
    return path

