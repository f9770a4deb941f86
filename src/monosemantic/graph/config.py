"""`monosemantic graph`'s options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GraphConfig:
    """Attribution graph (circuit tracing) of one prompt's next token, with per-layer
    transcoders or a cross-layer transcoder as the replacement model's MLPs; writes graph.json
    (docs/circuits.md)."""

    run: list[Path] = field(default_factory=list, metadata={"positional": True})
    """Transcoder runs (each reads blocks.L.hook_mlp_in and writes blocks.L.hook_mlp_out, one
    per layer, any subset of layers), or a transcoder-set folder holding transcoders.json.
    Layers without a transcoder are error nodes whole. Or one cross-layer transcoder run
    (docs/clt.md), alone."""
    prompt: str = ""
    """The prompt whose next token is explained (BOS is prepended)."""
    target: str | None = None
    """The next token to explain (one token, with its leading space, e.g. ' Paris');
    default: the most probable one."""
    logit_mass: float = 0.0
    """Without --target: also explain the most probable next tokens until their probability
    sums to this (0 = the top token only), at most --max-logits of them."""
    max_logits: int = 10
    """Most logit nodes with --logit-mass."""
    node_threshold: float = 0.8
    """Keep the nodes holding this share of the influence on the logits (tokens and logits
    are always kept)."""
    edge_threshold: float = 0.98
    """Keep the edges holding this share of the edge influence."""
    max_feature_nodes: int = 512
    """At most this many features get their incoming edges computed (targets), chosen by
    their estimated influence on the logits; the others' writes join the error node at their
    layer and position. 0: no cap. The default aims at 2 minutes for a 10-token prompt on
    Gemma 3 270M with transcoders on all 18 layers on a 2-core CPU (docs/circuits.md)."""
    update_interval: int = 4
    """With the cap: re-estimate the influence after this many batches of features."""
    interventions: bool = True
    """Also ablate every feature of the pruned graph in the model with the transcoders
    spliced in (errors kept) and correlate with the graph's prediction."""
    batch_size: int = 16
    """Targets per backward pass, and ablations per forward."""
    out: Path | None = None
    """Folder for graph.json; default FIRST_RUN/graphs/<prompt slug>/."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model: str | None = None
    """Model spec to load instead of the one the transcoders record (a moved model)."""
