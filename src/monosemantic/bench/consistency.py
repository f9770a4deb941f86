"""Seed consistency: how many features two SAEs trained alike (different seeds) share.

The decoder rows of the two SAEs are matched one-to-one to maximise the summed cosine
(Hungarian, `scipy.optimize.linear_sum_assignment`); reported: the mean matched cosine and the
share of matched pairs above 0.9. The cost matrix is F x F float64 (8·F² bytes), filled in
blocks; above `max_features` the matching falls back to each feature of A taking its best
cosine in B (blocked, no one-to-one constraint, an upper bound of the Hungarian figure), and
`method` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.runs import RunDir

THRESHOLD = 0.9
"""Matched cosine above which a feature counts as shared."""


def _unit(W_FD: Tensor) -> Tensor:
    w = W_FD.detach().double().cpu()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)


@torch.no_grad()
def cosine_blocks(W_a_FD: Tensor, W_b_FD: Tensor, block: int = 1024) -> np.ndarray:
    """cos(a_i, b_j) as a float64 [F_a, F_b] array, filled `block` rows at a time."""
    a, b = _unit(W_a_FD), _unit(W_b_FD)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    for lo in range(0, a.shape[0], block):
        out[lo:lo + block] = (a[lo:lo + block] @ b.T).numpy()
    return out


@torch.no_grad()
def best_cosines(W_a_FD: Tensor, W_b_FD: Tensor, block: int = 1024) -> np.ndarray:
    """Per row of A its largest cosine to any row of B (memory 8·block·F_b bytes)."""
    a, b = _unit(W_a_FD), _unit(W_b_FD)
    return torch.cat([(a[lo:lo + block] @ b.T).max(dim=1).values
                      for lo in range(0, a.shape[0], block)]).numpy()


def match_decoders(W_a_FD: Tensor, W_b_FD: Tensor, max_features: int = 16384
                   ) -> dict[str, Any]:
    """`mean_cosine`, `share_above_0.9`, `method` and `n_matched` of A's rows matched to B's."""
    n = max(W_a_FD.shape[0], W_b_FD.shape[0])
    if n > max_features:
        cos_N = best_cosines(W_a_FD, W_b_FD)
        method = "best match per feature of A (F above --hungarian-max-features)"
    else:
        from scipy.optimize import linear_sum_assignment

        cos_AB = cosine_blocks(W_a_FD, W_b_FD)
        rows, cols = linear_sum_assignment(cos_AB, maximize=True)
        cos_N = cos_AB[rows, cols]
        method = "hungarian"
    return {"mean_cosine": float(cos_N.mean()),
            f"share_above_{THRESHOLD}": float((cos_N > THRESHOLD).mean()),
            "n_matched": int(cos_N.shape[0]), "method": method}


def _identity(run: RunDir, model: str | None) -> tuple[str, str, str]:
    sae_cfg = {k: v for k, v in run.metadata["sae_config"].items()}
    return model or run.model, run.hook, repr(sorted(sae_cfg.items()))


def _seed(run: RunDir) -> Any:
    return (run.extra.get("train_config") or {}).get("seed")


def consistency_pairs(runs: list[RunDir], extra: list[int], model: str | None = None
                      ) -> list[tuple[int, int]]:
    """Index pairs to match: every two runs trained here with the same model, hook and SAE
    config and different training seeds, then the `extra` positions (from 1, two at a time),
    checked. `model`: the spec every run reads instead of its recorded one (--model)."""
    trained = [run.pretrained is None for run in runs]  # a pretrained SAE records no seed
    pairs = [(i, j) for i in range(len(runs)) for j in range(i + 1, len(runs))
             if trained[i] and trained[j] and _seed(runs[i]) != _seed(runs[j])
             and _identity(runs[i], model) == _identity(runs[j], model)]
    for a, b in zip(extra[::2], extra[1::2]):
        if not (1 <= a <= len(runs) and 1 <= b <= len(runs)) or a == b:
            raise UserError(f"--pair {a} {b}: give two different run positions between 1 and "
                            f"{len(runs)} (the order of RUN)")
        i, j = sorted((a - 1, b - 1))
        ra, rb = runs[i], runs[j]
        ma, mb = model or ra.model, model or rb.model
        if (ma, ra.hook, ra.d_in) != (mb, rb.hook, rb.d_in):
            raise UserError(f"--pair {a} {b}: {ra.name} reads {ma} {ra.hook} (width "
                            f"{ra.d_in}) but {rb.name} reads {mb} {rb.hook} (width "
                            f"{rb.d_in}): only SAEs of the same activations can be matched")
        if (i, j) not in pairs:
            pairs.append((i, j))
    return pairs
