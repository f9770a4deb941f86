"""Analyses from the decoder alone: logit effects and nearest features by decoder cosine.

Logit effect of feature i: the direct path of its decoder direction to the logits,
`(W_dec[i] ⊙ g) · W_Uᵀ`, where g is the final norm's elementwise gain (Gemma's RMSNorm applies
`1 + weight`, Llama's `weight`, LayerNorm `weight` after centring). The gain is measured by
running the norm module itself on ±x with x = (1, -1, 1, ...), which has zero mean and unit RMS,
so each family's own convention is used without naming it. The norm's division by the RMS is a
positive scalar per token and does not change the ranking of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from monosemantic.errors import UserError

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

# Module paths of the final norm, per layout (transformers' own names).
_FINAL_NORM_PATHS = ("model.norm", "model.language_model.norm", "language_model.norm",
                     "transformer.ln_f", "gpt_neox.final_layer_norm")


@dataclass
class LogitEffects:
    """Per feature, the tokens whose logits its direction raises most and lowers most."""

    top_ids_FT: Tensor
    top_vals_FT: Tensor
    bottom_ids_FT: Tensor
    bottom_vals_FT: Tensor


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied before the unembedding, or None when the layout is unknown."""
    for path in _FINAL_NORM_PATHS:
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    return None


@torch.no_grad()
def norm_gain(norm: nn.Module | None, d: int) -> tuple[Tensor, bool]:
    """(g [d], centres): the norm's elementwise gain and whether it subtracts the mean."""
    if norm is None:
        return torch.ones(d), False
    param = next(norm.parameters(), None)
    x_D = torch.ones(d, device=param.device if param is not None else "cpu",
                     dtype=param.dtype if param is not None else torch.float32)
    x_D[1::2] = -1.0
    if d % 2:  # odd width: (1, -1, ..., 1) has a mean; drop it so x stays zero-mean
        x_D[-1] = 0.0
        x_D *= (d / (d - 1)) ** 0.5
    x_2D = torch.stack([x_D, -x_D])
    out_2D = norm(x_2D).float()
    gain_D = (out_2D[0] - out_2D[1]) / (2 * x_D.float())
    if d % 2:
        gain_D[-1] = gain_D[-2]  # not measurable at a zero input; odd widths are rare
    return gain_D.cpu(), isinstance(norm, nn.LayerNorm)


@torch.no_grad()
def logit_effects(W_dec_FD: Tensor, W_U_VD: Tensor, gain_D: Tensor | None = None,
                  centre: bool = False, n_tokens: int = 10, chunk: int = 256) -> LogitEffects:
    """Top and bottom `n_tokens` logit effects of every decoder row, computed in feature chunks
    (memory 4·chunk·V bytes)."""
    W_U_VD = W_U_VD.float()
    n_tokens = min(n_tokens, W_U_VD.shape[0])
    parts: list[tuple[Tensor, ...]] = []
    for lo in range(0, W_dec_FD.shape[0], chunk):
        dirs_CD = W_dec_FD[lo:lo + chunk].float().to(W_U_VD.device)
        if centre:
            dirs_CD = dirs_CD - dirs_CD.mean(dim=1, keepdim=True)
        if gain_D is not None:
            dirs_CD = dirs_CD * gain_D.to(dirs_CD.device)
        logits_CV = dirs_CD @ W_U_VD.T
        top = logits_CV.topk(n_tokens, dim=1)
        bottom = logits_CV.topk(n_tokens, dim=1, largest=False)
        parts.append((top.indices.cpu(), top.values.cpu(), bottom.indices.cpu(),
                      bottom.values.cpu()))
    return LogitEffects(*(torch.cat([p[i] for p in parts]) for i in range(4)))


def model_logit_effects(lm: LoadedModel, hook: str, W_dec_FD: Tensor, n_tokens: int = 10
                        ) -> LogitEffects:
    """Logit effects of an SAE on `hook` of a loaded model (hooks of residual width only)."""
    point = lm.hook_point(hook)
    if point.width != lm.d_model:
        raise UserError(f"logit effects need a hook of the residual width {lm.d_model}; "
                        f"{hook} has width {point.width} (run analyze with --logit-tokens 0)")
    W_U_VD = unembedding(lm.model)
    if W_U_VD is None:
        raise UserError(f"{lm.spec} has no output embedding: run analyze with --logit-tokens 0")
    gain_D, centre = norm_gain(final_norm(lm.model), lm.d_model)
    return logit_effects(W_dec_FD, W_U_VD, gain_D, centre, n_tokens)


def unembedding(model: nn.Module) -> Tensor | None:
    """The output embedding [V, D] of a Hugging Face causal LM (detached), None without one."""
    # torch types nn.Module's dynamic attributes as Tensor | Module, so HF's own method reads
    # as a Tensor to the type checker.
    unembed = model.get_output_embeddings()  # pyright: ignore[reportCallIssue]
    return None if unembed is None else unembed.weight.detach()


@torch.no_grad()
def nearest_by_cosine(W_dec_FD: Tensor, n_neighbours: int = 10, chunk: int = 1024
                      ) -> tuple[Tensor, Tensor]:
    """Exact nearest features by decoder cosine, self excluded: (ids [F, n], cosines [F, n]).

    O(F²·d) time in chunks of `chunk` rows (memory 4·chunk·F bytes); `decoder_neighbours`
    switches to an approximate index for large dictionaries.
    """
    n_feat = W_dec_FD.shape[0]
    n_neighbours = min(n_neighbours, n_feat - 1)
    unit_FD = W_dec_FD.float() / W_dec_FD.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    ids, sims = [], []
    for lo in range(0, n_feat, chunk):
        cos_CF = unit_FD[lo:lo + chunk] @ unit_FD.T
        rows_C = torch.arange(lo, min(lo + chunk, n_feat))
        cos_CF[torch.arange(len(rows_C)), rows_C] = -float("inf")
        best = cos_CF.topk(n_neighbours, dim=1)
        ids.append(best.indices)
        sims.append(best.values)
    return torch.cat(ids), torch.cat(sims)


def approx_nearest_by_cosine(W_dec_FD: Tensor, n_neighbours: int = 10, seed: int = 0
                             ) -> tuple[Tensor, Tensor]:
    """Approximate nearest features by decoder cosine (NN-descent graph, pynndescent), self
    excluded: (ids [F, n], cosines [F, n]); O(F·d·n) memory, about O(F^1.14) time."""
    from pynndescent import NNDescent

    n_feat = W_dec_FD.shape[0]
    n_neighbours = min(n_neighbours, n_feat - 1)
    unit_FD = W_dec_FD.float() / W_dec_FD.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    # One more than asked: the point itself comes back as its own nearest neighbour.
    index = NNDescent(unit_FD.numpy(), metric="cosine", n_neighbors=max(n_neighbours + 1, 15),
                      random_state=seed, low_memory=True)
    graph = index.neighbor_graph
    # None only for a compressed index; this one is built uncompressed.
    assert graph is not None
    ids_FK, dist_FK = graph
    ids_FK, cos_FK = torch.from_numpy(ids_FK).long(), 1.0 - torch.from_numpy(dist_FK).float()
    self_FK = ids_FK == torch.arange(n_feat)[:, None]
    cos_FK = torch.where(self_FK | (ids_FK < 0), -float("inf"), cos_FK)
    best = cos_FK.topk(n_neighbours, dim=1)
    return ids_FK.gather(1, best.indices), best.values


def decoder_neighbours(W_dec_FD: Tensor, n_neighbours: int, exact_max: int = 32768,
                       seed: int = 0) -> tuple[Tensor, Tensor]:
    """Exact neighbours up to `exact_max` features, the approximate index beyond."""
    if W_dec_FD.shape[0] <= exact_max:
        return nearest_by_cosine(W_dec_FD, n_neighbours)
    try:
        return approx_nearest_by_cosine(W_dec_FD, n_neighbours, seed)
    except ImportError as err:
        raise UserError(f"{W_dec_FD.shape[0]:,} features need the approximate neighbour index "
                        "(pip install umap-learn, which brings pynndescent), or raise "
                        "--exact-neighbours-max") from err
