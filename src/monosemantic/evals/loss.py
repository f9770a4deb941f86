"""Next-token cross-entropy and KL on plain logits, and the loss-recovered accumulator.

Position t's logits predict token t+1. A prediction is *scored* when position t was spliced
(its hooked activation replaced) and t+1 exists, so clean, spliced and zero-ablated CE are means
over the same predictions. Formulas (DESIGN.md §6), all in nats:

- CE_x = mean over scored predictions of −log p_x(next token), for x ∈ {clean, spliced, zero};
- loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean)  (1 = as good as the model,
  0 = as bad as zeroing the activation);
- KL = mean over scored predictions of KL(p_clean ‖ p_spliced)
  = Σ_v p_clean (log p_clean − log p_spliced);
- ΔCE = CE_spliced − CE_clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import torch

LOSS_FORMULAS = {
    "ce": "CE = mean over scored predictions of -log p(next token), nats",
    "loss_recovered": "(CE_zero - CE_spliced) / (CE_zero - CE_clean)",
    "kl": "mean over scored predictions of KL(p_clean || p_spliced), nats",
    "delta_ce": "CE_spliced - CE_clean, nats",
    "scored": "predictions made at spliced positions (not BOS/special) of a next token that is "
              "not BOS/special either",
}

# Rows of logits turned into log-probabilities at once: bounds the float32 temporaries to
# about 2**24 elements (64 MB) whatever the vocabulary (Gemma's is 262,144).
_ELEMENTS_PER_CHUNK = 2**24


def next_token_targets(tokens_BS: torch.Tensor, splice_BS: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets aligned with logits (`targets_BS[:, t] = tokens_BS[:, t+1]`) and the scored mask.

    The last position has no target: its target is 0 and it is never scored.
    """
    targets_BS = torch.zeros_like(tokens_BS)
    targets_BS[:, :-1] = tokens_BS[:, 1:]
    score_BS = splice_BS.clone().bool()
    score_BS[:, -1] = False
    return targets_BS, score_BS


@overload
def ce_and_kl(
    logits_p_BSV: torch.Tensor, logits_q_BSV: torch.Tensor, targets_BS: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


@overload
def ce_and_kl(
    logits_p_BSV: torch.Tensor, logits_q_BSV: None, targets_BS: torch.Tensor
) -> tuple[torch.Tensor, None, None]: ...


def ce_and_kl(
    logits_p_BSV: torch.Tensor, logits_q_BSV: torch.Tensor | None, targets_BS: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-position CE of p, CE of q and KL(p ‖ q) (float32, shape [B, S]); q may be None."""
    B, S, V = logits_p_BSV.shape
    logits_p_NV = logits_p_BSV.reshape(B * S, V)
    logits_q_NV = None if logits_q_BSV is None else logits_q_BSV.reshape(B * S, V)
    targets_N1 = targets_BS.reshape(B * S, 1).to(logits_p_BSV.device)
    ce_p_N = torch.empty(B * S, device=logits_p_BSV.device)
    # Filled (and returned) only when q is given.
    ce_q_N = torch.empty_like(ce_p_N)
    kl_N = torch.empty_like(ce_p_N)
    chunk = max(1, _ELEMENTS_PER_CHUNK // V)
    for start in range(0, B * S, chunk):
        rows = slice(start, start + chunk)
        logp_CV = torch.log_softmax(logits_p_NV[rows].float(), dim=-1)
        ce_p_N[rows] = -logp_CV.gather(1, targets_N1[rows]).squeeze(1)
        if logits_q_NV is not None:
            logq_CV = torch.log_softmax(logits_q_NV[rows].float(), dim=-1)
            ce_q_N[rows] = -logq_CV.gather(1, targets_N1[rows]).squeeze(1)
            # A term with p_v = 0 is 0 (the limit of p log p), not the nan of 0 * (-inf).
            p_CV = logp_CV.exp()
            kl_terms_CV = torch.where(p_CV > 0, p_CV * (logp_CV - logq_CV), 0.0)
            kl_N[rows] = kl_terms_CV.sum(dim=-1)

    if logits_q_NV is None:
        return ce_p_N.reshape(B, S), None, None
    return ce_p_N.reshape(B, S), ce_q_N.reshape(B, S), kl_N.reshape(B, S)


@dataclass
class SplicedLossAccumulator:
    """Float64 sums of per-prediction CE (clean, spliced, zero-ablated) and KL over batches."""

    n_predictions: int = 0
    """Scored predictions so far."""
    ce_clean_sum: float = 0.0
    """Σ CE of the clean model."""
    ce_spliced_sum: float = 0.0
    """Σ CE with the SAE reconstruction spliced in."""
    ce_zero_sum: float = 0.0
    """Σ CE with the hooked activation zeroed."""
    kl_sum: float = 0.0
    """Σ KL(p_clean ‖ p_spliced)."""

    def update(
        self,
        ce_clean_BS: torch.Tensor,
        ce_spliced_BS: torch.Tensor,
        ce_zero_BS: torch.Tensor,
        kl_BS: torch.Tensor,
        score_BS: torch.Tensor,
    ) -> None:
        """Add the scored entries of one batch of per-position terms."""
        score_BS = score_BS.to(ce_clean_BS.device).bool()

        def total(t: torch.Tensor) -> float:
            return float(t[score_BS].to(torch.float64).sum())

        self.n_predictions += int(score_BS.sum())
        self.ce_clean_sum += total(ce_clean_BS)
        self.ce_spliced_sum += total(ce_spliced_BS)
        self.ce_zero_sum += total(ce_zero_BS)
        self.kl_sum += total(kl_BS)

    def update_from_logits(
        self,
        logits_clean_BSV: torch.Tensor,
        logits_spliced_BSV: torch.Tensor,
        logits_zero_BSV: torch.Tensor,
        tokens_BS: torch.Tensor,
        splice_BS: torch.Tensor,
    ) -> None:
        """Add one batch given the three runs' logits and which positions were spliced."""
        targets_BS, score_BS = next_token_targets(tokens_BS, splice_BS)
        ce_clean_BS, ce_spliced_BS, kl_BS = ce_and_kl(logits_clean_BSV, logits_spliced_BSV,
                                                      targets_BS)
        ce_zero_BS, _, _ = ce_and_kl(logits_zero_BSV, None, targets_BS)
        self.update(ce_clean_BS, ce_spliced_BS, ce_zero_BS, kl_BS, score_BS)

    def result(self) -> dict[str, float | int]:
        """`ce_clean`, `ce_spliced`, `ce_zero`, `loss_recovered`, `kl`, `delta_ce`, `n_predictions`.

        `loss_recovered` is nan when zero-ablation does not change the loss (0/0 has no meaning).
        """
        n = self.n_predictions
        if n == 0:
            raise ValueError("no predictions were scored")
        ce_clean, ce_spliced = self.ce_clean_sum / n, self.ce_spliced_sum / n
        ce_zero = self.ce_zero_sum / n
        gap = ce_zero - ce_clean
        return {
            "ce_clean": ce_clean,
            "ce_spliced": ce_spliced,
            "ce_zero": ce_zero,
            "loss_recovered": (ce_zero - ce_spliced) / gap if gap != 0 else math.nan,
            "kl": self.kl_sum / n,
            "delta_ce": ce_spliced - ce_clean,
            "n_predictions": n,
        }
