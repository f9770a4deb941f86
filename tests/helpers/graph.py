"""Tiny replacement models for the attribution-graph tests: random transcoders on some layers
of a tiny random model (float64, so identities hold to rounding), the graph's pieces, and the
frozen model's target input as a function of the node values (for finite differences)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from helpers.transcoder import random_transcoder
from monosemantic.graph.attribution import adjacency
from monosemantic.graph.frozen import CleanRun, NodeValues, frozen_forward, record
from monosemantic.graph.interventions import predicted_effects, spliced_targets
from monosemantic.graph.nodes import NodeSet, logit_targets, node_set, node_values
from monosemantic.graph.replacement import CLTReplacement, Replacement, TranscoderSet
from monosemantic.models import LoadedModel
from monosemantic.sae import SAEConfig, save_sae
from monosemantic.sae.clt import CrossLayerTranscoder
from monosemantic.steer.compare import prompt_ids

PROMPT = "The Golden Gate Bridge is in San"


def tiny_transcoders(lm: LoadedModel, layers: tuple[int, ...] = (0, 2), scale: float = 1.0,
                     dtype: torch.dtype = torch.float64) -> TranscoderSet:
    """Random topk skip transcoders on `layers`; `scale` shrinks their writes (decoder, b_dec,
    skip) so that an ablation stays in the linear regime."""
    tcs = {}
    for layer in layers:
        tc = random_transcoder(lm.d_model, lm.d_model, seed=layer + 1).to(dtype)
        with torch.no_grad():
            for param in (tc.W_dec, tc.b_dec, tc.W_skip):
                assert param is not None
                param.mul_(scale)
        tcs[layer] = tc
    return TranscoderSet(tcs, {layer: f"run_l{layer}" for layer in layers})


def tiny_clt(lm: LoadedModel, layers: tuple[int, ...] = (0, 2), scale: float = 1.0,
             seed: int = 0, dtype: torch.dtype = torch.float64) -> CrossLayerTranscoder:
    """An untrained topk CLT over `layers` (64 features and k = 4 per layer; random decoders
    to every later CLT layer, a nonzero bias per target layer), frozen; `scale` shrinks its
    writes (decoders and biases)."""
    torch.manual_seed(seed)
    cfg = SAEConfig(architecture="topk", d_in=lm.d_model, n_features=64, k=4)
    clt = CrossLayerTranscoder(cfg, layers).to(dtype)
    with torch.no_grad():
        clt.b_dec.normal_(0.0, 0.1).mul_(scale)
        for layer in layers:
            clt.encoder(layer).W_dec.mul_(scale)
    return clt.eval().requires_grad_(False)


def clt_replacement(clt: CrossLayerTranscoder) -> CLTReplacement:
    return CLTReplacement(clt, "clt_run")


@dataclass
class Built:
    clean: CleanRun
    nodes: NodeSet
    adj: Tensor


def build(lm: LoadedModel, replacement: Replacement, prompt: str = PROMPT,
          batch_size: int = 16) -> Built:
    clean = record(lm, prompt_ids(lm, prompt))
    values = node_values(lm, replacement, clean)
    nodes = node_set(lm, values, logit_targets(clean, None, 0.0, 10))
    return Built(clean, nodes, adjacency(lm, clean, replacement, nodes, batch_size))


def scaled_source(nodes: NodeSet, source: int, factor: float) -> NodeValues:
    """The node values with one source node's activation (feature) or vector (error, token)
    multiplied by `factor`, everything else held."""
    v = nodes.values
    codes = {k: c.clone() for k, c in v.codes.items()}
    errors = {k: e.clone() for k, e in v.errors.items()}
    emb = v.emb_SD.clone()
    if source < nodes.error_start:
        layer, pos, feat = (int(nodes.layer_N[source]), int(nodes.pos_N[source]),
                            int(nodes.feature_N[source]))
        codes[layer][pos, feat] *= factor
    elif source < nodes.token_start:
        layer, pos = divmod(source - nodes.error_start, nodes.n_pos)
        errors[layer][pos] *= factor
    else:
        emb[source - nodes.token_start] *= factor
    return replace(v, emb_SD=emb, codes=codes, errors=errors)


@torch.no_grad()
def target_input(lm: LoadedModel, built: Built, replacement: Replacement,
                 values: NodeValues, target: int) -> float:
    """The frozen model's input of node `target` (feature pre-activation without bias, or
    logit minus mean logit) at `values`."""
    fp = frozen_forward(lm, built.clean, replacement, values)
    nodes = built.nodes
    if target < nodes.n_features:
        layer, pos = int(nodes.layer_N[target]), int(nodes.pos_N[target])
        row_D = replacement.encoder_rows(layer, nodes.feature_N[target:target + 1])[0]
        return float(fp.mlp_in[layer][0, pos] @ row_D)
    assert fp.head_BSV is not None
    last_V = fp.head_BSV[0, -1]
    return float(last_V[nodes.logits.token_ids[target - nodes.logit_start]] - last_V.mean())


def finite_difference(lm: LoadedModel, built: Built, replacement: Replacement, source: int,
                      target: int, eps: float = 1e-3) -> float:
    """(t(a·(1+ε)) − t(a·(1−ε))) / 2ε = a · dt/da: the edge source -> target, measured."""
    up = target_input(lm, built, replacement, scaled_source(built.nodes, source, 1 + eps),
                      target)
    down = target_input(lm, built, replacement, scaled_source(built.nodes, source, 1 - eps),
                        target)
    return (up - down) / (2 * eps)


def save_transcoder_runs(root: Path, model_dir: Path, replacement: TranscoderSet
                         ) -> dict[int, Path]:
    """One run folder per layer (float32), as `train` would leave it."""
    runs = {}
    for layer, tc in replacement.transcoders.items():
        run = root / f"layer_{layer:02d}"
        save_sae(tc.float(), run / "sae", extra_metadata={
            "model": str(model_dir), "hook": f"blocks.{layer}.hook_mlp_in",
            "hook_out": f"blocks.{layer}.hook_mlp_out"})
        runs[layer] = run
    return runs


def as_transcoder_mlp(replacement: TranscoderSet, layer: int, valid_S1: Tensor) -> torch.nn.Module:
    """An MLP module computing exactly what the graph code's transcoder output computes (codes
    zeroed at the positions `valid_S1` excludes): a model whose errors are all zero."""

    class TranscoderMLP(torch.nn.Module):
        def forward(self, x_BSD: Tensor) -> Tensor:
            codes = replacement.encode(layer, x_BSD) * valid_S1
            return replacement.output(layer, {layer: codes}, x_BSD)

    return TranscoderMLP()


def assert_predicted_equal_frozen_ablations(lm: LoadedModel, replacement: Replacement) -> None:
    """With attention and norms frozen in the spliced model too (and writes small enough that
    no top-k reselection happens), the graph's total effects are its exact ablation effects."""
    built = build(lm, replacement)
    nodes = built.nodes
    features = torch.arange(nodes.n_features)
    predicted = predicted_effects(built.adj, nodes, nodes.logit_start, features)
    triples = [(int(nodes.layer_N[i]), int(nodes.pos_N[i]), int(nodes.feature_N[i]))
               for i in features]
    target = spliced_targets(lm, built.clean, replacement, nodes, nodes.logits.token_ids[0],
                             triples, frozen=True)
    measured = target[1:] - target[0]
    assert predicted.abs().max() > 0
    torch.testing.assert_close(predicted, measured, rtol=1e-6,
                               atol=1e-9 * float(predicted.abs().max()))
