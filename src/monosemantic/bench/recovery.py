"""How well an SAE recovered known features: matching, cosines, MCC, firing precision/recall.

Definitions (T true features with unit directions v_i, F SAE features with decoder rows w_j):

- **matching**: a one-to-one assignment of SAE features to true features maximising the summed
  cosine cos(w_j, v_i) (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`; `greedy`
  takes the best remaining pair repeatedly, an approximation). The cosine is *signed* by
  default: codes are non-negative, so a decoder row pointing at −v_i reconstructs −v_i and is
  not a recovery of v_i (`absolute=True` matches by |cos| for signed codes). When F < T some
  true features stay unmatched and count with cosine 0 and no activation scores.
- **mean matched cosine**: mean over the T true features of the cosine to their match.
- **recovered**: share of true features whose matched cosine exceeds 0.9.
- **mean max cosine**: mean over true features of the best cosine to *any* SAE feature (no
  one-to-one constraint; the MMCS of the dictionary-learning literature).
- **MCC** (mean correlation coefficient): mean over matched pairs of the Pearson correlation,
  over the held-out tokens, between the SAE feature's activation and the true feature's
  activation. A pair whose true feature never fires on those tokens is left out (undefined);
  an SAE feature that never fires correlates 0.
- **precision / recall / F1** of firing per matched pair: the SAE feature "fires" when its
  activation is > 0, the true one when its activation is > 0; precision = both / SAE fires,
  recall = both / true fires (pairs whose true feature never fires are left out; precision of
  an SAE feature that never fires is 0).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from monosemantic.errors import UserError
from monosemantic.sae.kernels import SparseCodes

RECOVERED_COSINE = 0.9
"""A true feature counts as recovered when its matched cosine exceeds this."""

FREQUENCY_BUCKETS = ((0.1, 1.0), (0.01, 0.1), (0.001, 0.01), (0.0, 0.001))
"""Firing-probability buckets [lo, hi) of the per-frequency summary (decades)."""

Matching = Literal["hungarian", "greedy"]


def cosine_matrix(W_dec_FD: torch.Tensor, true_TD: torch.Tensor) -> torch.Tensor:
    """cos(w_j, v_i) as [F, T] (float64; a zero row has cosine 0 with everything)."""
    w_FD = W_dec_FD.detach().double().cpu()
    v_TD = true_TD.detach().double().cpu()
    w_FD = w_FD / w_FD.norm(dim=1, keepdim=True).clamp_min(1e-30)
    v_TD = v_TD / v_TD.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return w_FD @ v_TD.T


def match_features(cos_FT: torch.Tensor, method: Matching = "hungarian",
                   absolute: bool = False) -> torch.Tensor:
    """The SAE feature matched to each true feature ([T] int64, -1 where none is left)."""
    score_FT = cos_FT.abs() if absolute else cos_FT
    n_feat, n_true = score_FT.shape
    match_T = torch.full((n_true,), -1, dtype=torch.long)
    if method == "hungarian":
        if importlib.util.find_spec("scipy") is None:
            raise UserError("Hungarian matching needs scipy (`pip install scipy`, or "
                            "monosemantic[analysis]); or pass --matching greedy")
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(score_FT.numpy(), maximize=True)
        match_T[torch.as_tensor(cols)] = torch.as_tensor(rows)
        return match_T
    if method != "greedy":
        raise UserError(f"--matching must be hungarian or greedy, got {method!r}")
    order = torch.argsort(score_FT.reshape(-1), descending=True)
    used_F = torch.zeros(n_feat, dtype=torch.bool)
    for flat in order.tolist():
        j, i = divmod(flat, n_true)
        if not used_F[j] and match_T[i] < 0:
            used_F[j], match_T[i] = True, j
            if bool((match_T >= 0).all()) or bool(used_F.all()):
                break
    return match_T


class PairStats:
    """Streaming sums over tokens for each matched pair (SAE feature j, true feature i)."""

    def __init__(self, match_T: torch.Tensor):
        self.match_T = match_T
        self.valid_T = match_T >= 0
        n_true = match_T.shape[0]
        names = ("n", "s", "t", "ss", "tt", "st", "fire_s", "fire_t", "fire_both")
        self.sums = {k: torch.zeros(n_true, dtype=torch.float64) for k in names}

    def add(self, f_NF: torch.Tensor, truth: SparseCodes) -> None:
        """Add a chunk: SAE codes [N, F] and the true activations of the same rows."""
        s_NT = f_NF.detach().double().cpu()[:, self.match_T.clamp_min(0)]
        s_NT[:, ~self.valid_T] = 0
        t_NT = truth.dense().double()
        fs, ft = s_NT > 0, t_NT > 0
        sums = self.sums
        sums["n"] += s_NT.shape[0]
        sums["s"] += s_NT.sum(0)
        sums["t"] += t_NT.sum(0)
        sums["ss"] += s_NT.square().sum(0)
        sums["tt"] += t_NT.square().sum(0)
        sums["st"] += (s_NT * t_NT).sum(0)
        sums["fire_s"] += fs.sum(0)
        sums["fire_t"] += ft.sum(0)
        sums["fire_both"] += (fs & ft).sum(0)

    def per_feature(self) -> dict[str, torch.Tensor]:
        """Pearson r, precision, recall, F1 per true feature (NaN where undefined)."""
        z = self.sums
        n = z["n"].clamp_min(1)
        cov = z["st"] / n - z["s"] / n * z["t"] / n
        var_s = (z["ss"] / n - (z["s"] / n).square()).clamp_min(0)
        var_t = (z["tt"] / n - (z["t"] / n).square()).clamp_min(0)
        denom = (var_s * var_t).sqrt()
        corr = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
        precision = torch.where(z["fire_s"] > 0, z["fire_both"] / z["fire_s"].clamp_min(1),
                                torch.zeros_like(cov))
        recall = z["fire_both"] / z["fire_t"].clamp_min(1)
        pr = precision + recall
        f1 = torch.where(pr > 0, 2 * precision * recall / pr.clamp_min(1e-300),
                         torch.zeros_like(pr))
        defined = (z["fire_t"] > 0) & (var_t > 0) & self.valid_T
        nan = torch.full_like(corr, math.nan)
        return {k: torch.where(defined, v, nan) for k, v in
                (("corr", corr), ("precision", precision), ("recall", recall), ("f1", f1))}


@dataclass
class Recovery:
    """Per-true-feature recovery figures of one SAE (tensors of length T)."""

    matched_T: torch.Tensor
    cosine_T: torch.Tensor
    max_cosine_T: torch.Tensor
    corr_T: torch.Tensor
    precision_T: torch.Tensor
    recall_T: torch.Tensor
    f1_T: torch.Tensor

    def summary(self, frequency_T: torch.Tensor | None = None,
                role_T: torch.Tensor | None = None, roles: tuple[str, ...] = ()
                ) -> dict[str, Any]:
        """The headline numbers; given each true feature's firing probability, the same by
        frequency bucket; given each one's role (an index into `roles`), by role."""
        out = _summarise(self, torch.ones_like(self.cosine_T, dtype=torch.bool))
        if role_T is not None:
            out["by_role"] = {name: _summarise(self, role_T == i)
                              for i, name in enumerate(roles) if bool((role_T == i).any())}
        if frequency_T is not None:
            out["by_frequency"] = [
                {"frequency": [lo, hi], **_summarise(self, (frequency_T >= lo) &
                                                     (frequency_T < hi))}
                for lo, hi in FREQUENCY_BUCKETS if bool(((frequency_T >= lo) &
                                                         (frequency_T < hi)).any())]
        return out


def _summarise(rec: Recovery, sel_T: torch.Tensor) -> dict[str, Any]:
    def mean(v: torch.Tensor) -> float | None:
        v = v[sel_T]
        v = v[~torch.isnan(v)]
        return float(v.mean()) if v.numel() else None

    return {
        "n_true": int(sel_T.sum()),
        "mean_cosine": mean(rec.cosine_T),
        "recovered": mean((rec.cosine_T > RECOVERED_COSINE).double()),
        "mean_max_cosine": mean(rec.max_cosine_T),
        "mcc": mean(rec.corr_T),
        "precision": mean(rec.precision_T),
        "recall": mean(rec.recall_T),
        "f1": mean(rec.f1_T),
        "n_scored": int((~torch.isnan(rec.corr_T[sel_T])).sum()),
    }


def score_recovery(W_dec_FD: torch.Tensor, true_TD: torch.Tensor,
                   chunks: Iterable[tuple[torch.Tensor, SparseCodes]],
                   method: Matching = "hungarian", absolute: bool = False) -> Recovery:
    """Recovery figures from the decoder rows and (SAE codes [N, F], true activations) chunks
    of held-out tokens (the codes of the same rows as the activations)."""
    if W_dec_FD.shape[1] != true_TD.shape[1]:
        raise UserError(f"the SAE reads width {W_dec_FD.shape[1]} but the true features have "
                        f"width {true_TD.shape[1]}")
    cos_FT = cosine_matrix(W_dec_FD, true_TD)
    match_T = match_features(cos_FT, method, absolute)
    score_FT = cos_FT.abs() if absolute else cos_FT
    valid_T = match_T >= 0
    cosine_T = torch.zeros(match_T.shape[0], dtype=torch.float64)
    cosine_T[valid_T] = score_FT[match_T[valid_T], valid_T.nonzero().squeeze(1)]
    stats = PairStats(match_T)
    for f_NF, truth in chunks:
        stats.add(f_NF, truth)
    acts = stats.per_feature()
    return Recovery(match_T, cosine_T, score_FT.max(dim=0).values, acts["corr"],
                    acts["precision"], acts["recall"], acts["f1"])
