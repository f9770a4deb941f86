"""The graph's nodes on one prompt: token embeddings, active features, errors, logits.

Order (the adjacency matrix's rows and columns): every active feature (by layer, position,
feature id), then one error per (layer, position) for every layer of the model (index
`layer * S + pos`), then one token per position, then the logit targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.graph.frozen import CleanRun, NodeValues
from monosemantic.graph.replacement import Replacement
from monosemantic.models import LoadedModel


@dataclass
class LogitTargets:
    """The logit nodes: token ids, their probabilities (the influence weights) and logits."""

    token_ids: list[int]
    probs: list[float]
    logits: list[float]


@dataclass
class NodeSet:
    """Node values and the index layout of the adjacency matrix."""

    values: NodeValues
    layer_N: Tensor
    """Active features: layer, position, feature id, activation (CPU)."""
    pos_N: Tensor
    feature_N: Tensor
    act_N: Tensor
    n_layers: int
    n_pos: int
    logits: LogitTargets

    @property
    def n_features(self) -> int:
        return len(self.layer_N)

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_start + len(self.logits.token_ids)

    def error_index(self, layer: int, pos: int) -> int:
        return self.error_start + layer * self.n_pos + pos

    def kinds(self) -> list[str]:
        """Each node's kind, in order."""
        return (["feature"] * self.n_features + ["error"] * (self.n_layers * self.n_pos)
                + ["token"] * self.n_pos + ["logit"] * len(self.logits.token_ids))


def valid_positions(lm: LoadedModel, ids_1S: Tensor) -> Tensor:
    """[S] bool: positions whose features are nodes (not BOS or other special tokens, which
    transcoders were not trained on: their MLP output is all error)."""
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    return torch.tensor([p > 0 and t not in special for p, t in enumerate(ids_1S[0].tolist())])


@torch.no_grad()
def node_values(lm: LoadedModel, replacement: Replacement, clean: CleanRun) -> NodeValues:
    """Feature activations from the recorded `hook_mlp_in`s, errors = recorded `hook_mlp_out`
    minus the replacement's output (a whole MLP output where a layer is not replaced)."""
    valid_S1 = valid_positions(lm, clean.ids_1S)[:, None].to(clean.emb_SD.device)
    codes = {layer: replacement.encode(layer, clean.mlp_in[layer][None])[0] * valid_S1
             for layer in replacement.layers}
    batched = {layer: c[None] for layer, c in codes.items()}
    errors = {}
    for layer in range(lm.n_layers):
        y_SD = clean.mlp_out[layer]
        if layer in replacement.layers:
            y_hat_SD = replacement.output(layer, batched, clean.mlp_in[layer][None])[0]
            errors[layer] = y_SD - y_hat_SD.to(y_SD.dtype)
        else:
            errors[layer] = y_SD.clone()
    return NodeValues(emb_SD=clean.emb_SD, codes=codes, errors=errors)


def target_token(lm: LoadedModel, target: str) -> int:
    """The id of `target`, which must be one token."""
    ids = lm.tokenizer(target, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        raise UserError(f"--target {target!r} is {len(ids)} tokens {pieces} for this "
                        "tokenizer; give one token (mind the leading space, e.g. ' Paris')")
    return int(ids[0])


def logit_targets(clean: CleanRun, target_id: int | None, mass: float,
                  max_logits: int) -> LogitTargets:
    """The target token, or the top logit; with `mass` > 0 the most probable tokens until
    their probability sums to `mass` (at most `max_logits`)."""
    probs_V = torch.softmax(clean.logits_V.float(), dim=-1)
    if target_id is not None:
        ids = [target_id]
    else:
        order = probs_V.argsort(descending=True)
        cumulative = probs_V[order].cumsum(0)
        n = int((cumulative < mass).sum()) + 1 if mass > 0 else 1
        ids = order[:max(1, min(n, max_logits))].tolist()
    return LogitTargets(token_ids=[int(i) for i in ids],
                        probs=[float(probs_V[i]) for i in ids],
                        logits=[float(clean.head_SV[-1, i]) for i in ids])


def node_set(lm: LoadedModel, values: NodeValues, logits: LogitTargets) -> NodeSet:
    """The active features of `values` listed, and the layout."""
    layers, poss, feats, acts = [], [], [], []
    for layer, codes_SF in sorted(values.codes.items()):
        pos_N, feat_N = (codes_SF != 0).nonzero(as_tuple=True)
        layers.append(torch.full_like(pos_N, layer))
        poss.append(pos_N)
        feats.append(feat_N)
        acts.append(codes_SF[pos_N, feat_N])
    empty = torch.zeros(0, dtype=torch.long)
    return NodeSet(values=values,
                   layer_N=torch.cat(layers).cpu() if layers else empty,
                   pos_N=torch.cat(poss).cpu() if poss else empty,
                   feature_N=torch.cat(feats).cpu() if feats else empty,
                   act_N=torch.cat(acts).cpu() if acts else torch.zeros(0),
                   n_layers=lm.n_layers, n_pos=values.emb_SD.shape[0], logits=logits)
