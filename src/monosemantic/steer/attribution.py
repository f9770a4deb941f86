"""Attribution of a next-token metric to SAE features, checked by ablation.

metric = logit(target) − logit(baseline) at the last position (log-prob of target without a
baseline). With x = SAE(x) + err(x) at the hook and err held fixed, the spliced forward is the
model's own, and d metric / d f_i = W_dec[i] · ∇ₓ metric; so one forward and one backward give

    attr[p, i] = f_i(x_p) · (W_dec[i] · ∇ₓ metric)_p

for every active feature i at every position p: the first-order (Taylor) estimate of how much the
metric drops when f_i is set to 0 at p. The ablation measures that drop: x_p − f_i·W_dec[i]
(err kept, the other codes untouched — no top-k reselection), forward, metric change. Ablations
are batched, one batch row per (feature, position), with an unedited row in every batch so each
effect is a difference within one batched forward.

The BOS position (and other special tokens) is left out: the SAE was not trained on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.models import activation_gradients, edit
from monosemantic.steer.compare import prompt_ids


@dataclass
class AttributionRow:
    """One (feature, position) pair."""

    feature: int
    position: int
    """Token index in the prompt, BOS = 0."""
    token: str
    activation: float
    attribution: float
    """f_i · (W_dec[i] · ∇ₓ metric): first-order estimate of `ablation_effect`."""
    ablation_effect: float | None
    """metric(clean) − metric(feature set to 0 at this position); None when not ablated."""


@dataclass
class AttributionResult:
    """Outcome of `attribute`: the top rows by |attribution| and how well they predict ablation."""

    prompt: str
    target: str
    baseline: str | None
    metric_name: str
    """e.g. `logit(' np') - logit(' pd')` (first token of target and baseline)."""
    metric: float
    """The metric on the clean prompt."""
    n_active: int
    """Active (feature, position) pairs attributed (the rows are the top of these)."""
    rows: list[AttributionRow] = field(default_factory=list)
    corr_attribution_ablation: float | None = None
    """Pearson correlation over the rows of attribution with ablation effect."""
    corr_activation_ablation: float | None = None
    """Pearson correlation over the rows of activation with ablation effect."""
    target_tokens: int = 1
    """Tokens in the target; only the first one is scored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_token(lm: Any, text: str, what: str) -> tuple[int, int]:
    """(id of the first token of `text`, number of tokens of `text`)."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"the {what} {text!r} has no tokens")
    return int(ids[0]), len(ids)


def metric_per_row(target_id: int, baseline_id: int | None) -> Callable[[Tensor], Tensor]:
    """logits [B, S, V] -> metric [B] at the last position."""

    def metric(logits_BSV: Tensor) -> Tensor:
        last_BV = logits_BSV[:, -1].float()
        if baseline_id is None:
            return torch.log_softmax(last_BV, dim=-1)[:, target_id]
        return last_BV[:, target_id] - last_BV[:, baseline_id]

    return metric


def pearson(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation, None with fewer than two points or a constant series."""
    if len(a) < 2:
        return None
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return None if denom == 0 else float((x * y).sum()) / denom


@torch.no_grad()
def ablation_effects(lm: Any, hook: str, ids_1S: Tensor, positions_N: Tensor, deltas_ND: Tensor,
                     metric: Callable[[Tensor], Tensor], batch_size: int = 32) -> Tensor:
    """metric(clean) − metric(x + deltas[n] at positions[n]) for each n [N], batched.

    Each batch holds an unedited row 0 and one edited row per n, so the clean value is taken in
    the same forward as the edits it is compared to."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    out: list[Tensor] = []
    for start in range(0, len(positions_N), batch_size):
        pos_B = positions_N[start:start + batch_size]
        delta_BD = deltas_ND[start:start + batch_size]
        n_rows = len(pos_B) + 1
        rows_B = torch.arange(1, n_rows)

        def ablate(act_BSD: Tensor, pos_B: Tensor = pos_B, delta_BD: Tensor = delta_BD,
                   rows_B: Tensor = rows_B) -> Tensor:
            new_BSD = act_BSD.clone()
            new_BSD[rows_B, pos_B.to(act_BSD.device)] += delta_BD.to(act_BSD.device, act_BSD.dtype)
            return new_BSD

        ids_BS = ids_1S.expand(n_rows, -1)
        with edit(lm, {hook: ablate}):
            logits_BSV = lm.model(input_ids=ids_BS, use_cache=False).logits
        metric_B = metric(logits_BSV)
        out.append((metric_B[0] - metric_B[1:]).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def attribute(lm: Any, sae: Any, hook: str, prompt: str, target: str, baseline: str | None = None,
              *, top: int = 20, ablate: bool = True, batch_size: int = 32) -> AttributionResult:
    """Attribute the metric to every active feature at every position (one backward), keep the
    `top` by |attribution|, and (with `ablate`) measure each one's ablation effect."""
    if top < 1:
        raise UserError(f"top must be >= 1, got {top}")
    ids_1S = prompt_ids(lm, prompt)
    target_id, n_target = first_token(lm, target, "target")
    baseline_id = None if baseline is None else first_token(lm, baseline, "baseline")[0]
    if baseline_id == target_id:
        raise UserError(f"target {target!r} and baseline {baseline!r} start with the same token")
    metric = metric_per_row(target_id, baseline_id)
    grads = activation_gradients(lm, ids_1S, [hook], lambda logits: metric(logits)[0])

    W_dec_FD = sae.W_dec_FD.detach()
    x_SD = grads.acts[hook][0].to(W_dec_FD.device, torch.float32)
    grad_SD = grads.grads[hook][0].to(W_dec_FD.device, torch.float32)
    with torch.no_grad():
        f_SF = sae.encode(x_SD).float()
        attr_SF = f_SF * (grad_SD @ W_dec_FD.T.float())
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    valid_S = torch.tensor([p > 0 and t not in special for p, t in enumerate(ids_1S[0].tolist())],
                           device=f_SF.device)
    active_SF = (f_SF != 0) & valid_S[:, None]
    pos_N, feat_N = active_SF.nonzero(as_tuple=True)
    order = attr_SF[pos_N, feat_N].abs().argsort(descending=True)[:top]
    pos_N, feat_N = pos_N[order], feat_N[order]

    tok = lm.tokenizer
    tokens = [tok.decode([t]) for t in ids_1S[0].tolist()]
    rows = [AttributionRow(feature=int(i), position=int(p), token=tokens[int(p)],
                           activation=float(f_SF[p, i]), attribution=float(attr_SF[p, i]),
                           ablation_effect=None) for p, i in zip(pos_N, feat_N)]
    result = AttributionResult(
        prompt=prompt, target=target, baseline=baseline,
        metric_name=(f"log p({tok.decode([target_id])!r})" if baseline_id is None else
                     f"logit({tok.decode([target_id])!r}) - logit({tok.decode([baseline_id])!r})"),
        metric=float(grads.metric), n_active=int(active_SF.sum()), rows=rows,
        target_tokens=n_target)
    if ablate and rows:
        deltas_ND = -f_SF[pos_N, feat_N, None] * W_dec_FD[feat_N].float()
        effects_N = ablation_effects(lm, hook, ids_1S, pos_N.cpu(), deltas_ND, metric, batch_size)
        for row, effect in zip(rows, effects_N.tolist()):
            row.ablation_effect = effect
        ablation = [r.ablation_effect for r in rows]
        result.corr_attribution_ablation = pearson([r.attribution for r in rows], ablation)
        result.corr_activation_ablation = pearson([r.activation for r in rows], ablation)
    return result
