"""Edges of the attribution graph: batched backward passes through the frozen replacement model.

Edge source -> target = (source activation) x (derivative of the target's input with respect
to the source's write), in the frozen model (`frozen.py`), where
- a target's input is a feature's encoder pre-activation (its encoder row · its layer's
  `hook_mlp_in`, bias left out: a constant) or a logit node's logit minus the mean logit;
- a source's write is a feature's decoder row into `hook_mlp_out` of each layer it writes
  (times its activation), an error node's vector at its layer's `hook_mlp_out`, a token's
  embedding vector at the embedding output.
So edge = a_s · (W_dec[s] · ∂t/∂mlp_out) for features, err · ∂t/∂mlp_out for errors and
emb · ∂t/∂emb for tokens. Because the frozen model is affine in its node values, these
gradients do not depend on the values and equal finite differences exactly (up to rounding).

One backward serves a batch of targets: the prompt is replicated along the batch, row r's
target is read from row r only, so the sum over rows differentiates each row separately.
Only feature and logit nodes have inputs; token and error rows stay zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from monosemantic.graph.frozen import CleanRun, frozen_forward
from monosemantic.graph.nodes import NodeSet
from monosemantic.graph.replacement import Replacement
from monosemantic.models import LoadedModel
from monosemantic.progress import progress


@dataclass
class _SourceLayer:
    """The active features of one source layer, with their decoder rows per written layer."""

    index_N: Tensor
    pos_N: Tensor
    act_N: Tensor
    rows: dict[int, Tensor]


def _source_layers(replacement: Replacement, nodes: NodeSet, device: torch.device,
                   dtype: torch.dtype) -> list[_SourceLayer]:
    out = []
    for layer in replacement.layers:
        index_N = (nodes.layer_N == layer).nonzero().squeeze(1)
        if len(index_N) == 0:
            continue
        feat_N = nodes.feature_N[index_N]
        rows = {target: replacement.decoder_rows(layer, target, feat_N).to(device, dtype)
                for target in replacement.writes(layer)}
        out.append(_SourceLayer(index_N, nodes.pos_N[index_N].to(device),
                                nodes.act_N[index_N].to(device, dtype), rows))
    return out


def _target_values(replacement: Replacement, nodes: NodeSet, targets: list[int],
                   pass_in: dict[int, Tensor], head_BSV: Tensor) -> Tensor:
    """The sum over rows of row r's target input (feature pre-activation without bias, or
    logit minus mean logit)."""
    total = head_BSV.new_zeros((), dtype=torch.promote_types(head_BSV.dtype, torch.float32))
    rows_T = torch.arange(len(targets))
    is_feature_T = torch.tensor([t < nodes.n_features for t in targets])
    for layer in replacement.layers:
        pick_R = rows_T[is_feature_T]
        if len(pick_R) == 0:
            break
        node_R = torch.tensor(targets)[pick_R]
        here_R = nodes.layer_N[node_R] == layer
        if not here_R.any():
            continue
        rows_R, node_R = pick_R[here_R], node_R[here_R]
        enc_RD = replacement.encoder_rows(layer, nodes.feature_N[node_R]).to(total.dtype)
        x_RD = pass_in[layer][rows_R.to(enc_RD.device), nodes.pos_N[node_R].to(enc_RD.device)]
        total = total + (x_RD.to(total.dtype) * enc_RD).sum()
    logit_rows = rows_T[~is_feature_T]
    if len(logit_rows):
        token_ids = [nodes.logits.token_ids[targets[r] - nodes.logit_start]
                     for r in logit_rows.tolist()]
        last_RV = head_BSV[logit_rows.to(head_BSV.device), -1].to(total.dtype)
        picked = last_RV[torch.arange(len(token_ids)), torch.tensor(token_ids)]
        total = total + (picked - last_RV.mean(-1)).sum()
    return total


def adjacency(lm: LoadedModel, clean: CleanRun, replacement: Replacement, nodes: NodeSet,
              batch_size: int = 16) -> Tensor:
    """A [n_nodes, n_nodes] (rows targets, columns sources) on the CPU, float32: every
    feature and logit row computed (no cap)."""
    rows = row_computer(lm, clean, replacement, nodes)
    adj = torch.zeros(nodes.n_nodes, nodes.n_nodes, dtype=edge_dtype(clean))
    targets = list(range(nodes.n_features)) + list(range(nodes.logit_start, nodes.n_nodes))
    batches = [targets[i:i + batch_size] for i in range(0, len(targets), batch_size)]
    with progress(len(batches), desc="graph edges", unit="batch") as bar:
        for batch in batches:
            adj[torch.tensor(batch)] = rows(batch)
            bar.update(1)
    return adj


def edge_dtype(clean: CleanRun) -> torch.dtype:
    """float32 at least; a float64 model (tests) keeps float64."""
    return torch.promote_types(clean.emb_SD.dtype, torch.float32)


def row_computer(lm: LoadedModel, clean: CleanRun, replacement: Replacement,
                 nodes: NodeSet) -> Callable[[list[int]], Tensor]:
    """A function from a batch of target nodes (features or logits) to their rows
    [len(batch), n_nodes] on the CPU (one backward)."""
    sources = _source_layers(replacement, nodes, clean.emb_SD.device, edge_dtype(clean))

    def rows(batch: list[int]) -> Tensor:
        return _edges_into(lm, clean, replacement, nodes, sources, batch)

    return rows


def _edges_into(lm: LoadedModel, clean: CleanRun, replacement: Replacement, nodes: NodeSet,
                sources: list[_SourceLayer], batch: list[int]) -> Tensor:
    """The rows of `batch`'s targets, from one backward."""
    values, seq, device = nodes.values, nodes.n_pos, clean.emb_SD.device
    dtype = edge_dtype(clean)
    with torch.enable_grad():
        fp = frozen_forward(lm, clean, replacement, values, batch=len(batch), deltas=True)
        assert fp.head_BSV is not None
        total = _target_values(replacement, nodes, batch, fp.mlp_in, fp.head_BSV)
        keys = list(fp.deltas)
        grads = torch.autograd.grad(total, [fp.deltas[k] for k in keys], allow_unused=True)
    grad = {k: (torch.zeros_like(fp.deltas[k]) if g is None else g).to(dtype)
            for k, g in zip(keys, grads)}
    out = torch.zeros(len(batch), nodes.n_nodes, dtype=dtype)
    out[:, nodes.token_start:nodes.token_start + seq] = \
        (values.emb_SD[None].to(dtype) * grad["emb"]).sum(-1).cpu()
    for layer in range(nodes.n_layers):
        start = nodes.error_index(layer, 0)
        out[:, start:start + seq] = \
            (values.errors[layer][None].to(dtype) * grad[layer]).sum(-1).cpu()
    for src in sources:
        weight_RN = torch.zeros(len(batch), len(src.index_N), device=device, dtype=dtype)
        cols_N = torch.arange(len(src.index_N), device=device)
        for target, rows_ND in src.rows.items():
            proj_RSN = grad[target] @ rows_ND.T
            weight_RN += proj_RSN[:, src.pos_N, cols_N]
        out[:, src.index_N] = (weight_RN * src.act_N).cpu()
    return out
