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

Every active pair is ablated (a uniform random sample above a cap, drawn without looking at
attribution or activation), and the correlations are taken over those pairs: restricting them to
the top pairs by |attribution| would narrow the range of one variable and favour it. The top
pairs are listed as a separate view.

The BOS position (and other special tokens) is left out: the SAE was not trained on it.

A transcoder reads x at `hook` and its decoder writes y at `hook_out`: with its error
y − ŷ(x) held fixed, d metric / d f_i = W_dec[i] · ∇_y metric, so

    attr[p, i] = f_i(x_p) · (W_dec[i] · ∇_y metric)_p

(the codes from the input site, the gradient at the output site). Its ablation is y_p −
f_i(x_p)·W_dec[i] at `hook_out`: `steering`'s clamp to 0 at p, since x is read before y is
edited in the forward (the codes stay those of the clean x). The SAE path is hook_out = hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, activation_gradients, edit
from monosemantic.sae import SAE
from monosemantic.steer.compare import prompt_ids
from monosemantic.steer.correlation import pearson, spearman
from monosemantic.steer.steering import decoder_hook

DEFAULT_MAX_ABLATIONS = 4096
"""Enough to ablate every active pair of a ~100-token prompt with k = 32 (a few thousand)."""


@dataclass
class AttributionRow:
    """One (feature, position) pair."""

    feature: int
    position: int
    """Token index in the prompt, BOS = 0."""
    token: str
    activation: float
    attribution: float
    """f_i · (W_dec[i] · ∇ metric at the decoder's hook): first-order estimate of
    `ablation_effect`."""
    ablation_effect: float | None
    """metric(clean) − metric(feature set to 0 at this position); None when not ablated."""


@dataclass
class PairCorrelations:
    """How well attribution and raw activation predict the ablation effect, over the active
    (feature, position) pairs at non-special positions: every one of them, or, when there are
    more than `max_ablations`, a uniform random sample drawn without looking at attribution or
    activation. Never over the top rows alone (selecting on |attribution| would favour it)."""

    n_pairs: int
    """Active (feature, position) pairs at non-special positions: the population."""
    n_ablated: int
    """Pairs ablated and correlated: `n_pairs`, or the sample size when `sampled`."""
    sampled: bool
    """True when `n_pairs` exceeded the cap and a uniform sample of `n_ablated` was taken."""
    sample_seed: int | None
    """Seed of the sample; None when every pair was ablated."""
    pearson_attribution: float | None
    """Pearson correlation of attribution with ablation effect over the `n_ablated` pairs."""
    spearman_attribution: float | None
    """Spearman (rank, ties averaged) correlation of attribution with ablation effect over the
    `n_ablated` pairs."""
    pearson_activation: float | None
    """Pearson correlation of activation with ablation effect over the `n_ablated` pairs."""
    spearman_activation: float | None
    """Spearman correlation of activation with ablation effect over the `n_ablated` pairs."""

    @property
    def population(self) -> str:
        """`all 96 active pairs` or `a uniform sample of 4096 of 9000 active pairs (seed 0)`."""
        if not self.sampled:
            return f"all {self.n_pairs} active pairs"
        return (f"a uniform sample of {self.n_ablated} of {self.n_pairs} active pairs "
                f"(seed {self.sample_seed})")


@dataclass
class AttributionResult:
    """Outcome of `attribute`: the top rows by |attribution| (a view) and, when ablated, the
    correlations over all active pairs (`all_pairs`)."""

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
    """The `top` pairs by |attribution|, each with its ablation effect when ablated."""
    all_pairs: PairCorrelations | None = None
    """Correlations with the ablation effect over all active pairs (or a uniform sample of
    them), not over the rows; None without ablation."""
    target_tokens: int = 1
    """Tokens in the target; only the first one is scored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_token(lm: LoadedModel, text: str, what: str) -> tuple[int, int]:
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


@torch.no_grad()
def ablation_effects(lm: LoadedModel, hook: str, ids_1S: Tensor, positions_N: Tensor,
                     deltas_ND: Tensor, metric: Callable[[Tensor], Tensor],
                     batch_size: int = 32) -> Tensor:
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


def uniform_sample(n: int, cap: int, seed: int) -> Tensor | None:
    """Sorted indices [cap] drawn uniformly without replacement from range(n) when n > cap;
    None when n <= cap (take every index)."""
    if n <= cap:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:cap].sort().values


def correlations(attr_M: Tensor, act_M: Tensor, effect_M: Tensor, n_pairs: int,
                 sample_seed: int | None) -> PairCorrelations:
    """Pearson and Spearman of attribution and of activation with the ablation effect."""
    return PairCorrelations(
        n_pairs=n_pairs, n_ablated=len(effect_M), sampled=sample_seed is not None,
        sample_seed=sample_seed,
        pearson_attribution=pearson(attr_M, effect_M),
        spearman_attribution=spearman(attr_M, effect_M),
        pearson_activation=pearson(act_M, effect_M),
        spearman_activation=spearman(act_M, effect_M))


@dataclass
class ActivePairs:
    """The active (feature, position) pairs at non-special positions, in (position, feature)
    order, on the CPU."""

    position_N: Tensor
    feature_N: Tensor
    activation_N: Tensor
    attribution_N: Tensor


def active_pairs(lm: LoadedModel, sae: SAE, ids_1S: Tensor, x_SD: Tensor, grad_SD: Tensor
                 ) -> ActivePairs:
    """Encode the activations `x` (at the hook the dictionary reads) and attribute every active
    code at every non-special position with `grad` (the metric's, at the decoder's hook)."""
    W_dec_FD = sae.W_dec_FD.detach()
    x_SD = x_SD.to(W_dec_FD.device, torch.float32)
    grad_SD = grad_SD.to(W_dec_FD.device, torch.float32)
    with torch.no_grad():
        f_SF = sae.encode(x_SD).float()
        attr_SF = f_SF * (grad_SD @ W_dec_FD.T.float())
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    valid_S = torch.tensor([p > 0 and t not in special for p, t in enumerate(ids_1S[0].tolist())],
                           device=f_SF.device)
    pos_N, feat_N = ((f_SF != 0) & valid_S[:, None]).nonzero(as_tuple=True)
    return ActivePairs(pos_N.cpu(), feat_N.cpu(), f_SF[pos_N, feat_N].cpu(),
                       attr_SF[pos_N, feat_N].cpu())


def ablate_pairs(lm: LoadedModel, sae: SAE, hook: str, ids_1S: Tensor, pairs: ActivePairs,
                 index_A: Tensor, metric: Callable[[Tensor], Tensor], batch_size: int) -> Tensor:
    """Ablation effect [N] of the pairs at `index_A` (NaN for the others); `hook`: the
    decoder's hook, where each pair's contribution f_i·W_dec[i] is taken out."""
    W_dec_FD = sae.W_dec_FD.detach()
    device = W_dec_FD.device
    act_A1 = pairs.activation_N[index_A, None].to(device)
    deltas_AD = -act_A1 * W_dec_FD[pairs.feature_N[index_A].to(device)].float()
    effect_N = torch.full((len(pairs.position_N),), float("nan"), dtype=torch.float32)
    effect_N[index_A] = ablation_effects(lm, hook, ids_1S, pairs.position_N[index_A], deltas_AD,
                                         metric, batch_size).float()
    return effect_N


def attribute(lm: LoadedModel, sae: SAE, hook: str, prompt: str, target: str,
              baseline: str | None = None, *, top: int = 20, ablate: bool = True,
              batch_size: int = 32, max_ablations: int = DEFAULT_MAX_ABLATIONS,
              sample_seed: int = 0, hook_out: str | None = None) -> AttributionResult:
    """Attribute the metric to every active feature at every non-special position (one
    backward) and list the `top` by |attribution|. With `ablate`, ablate every active pair (a
    uniform sample of `max_ablations` of them, seeded by `sample_seed`, when there are more;
    the listed rows are ablated too) and correlate attribution and activation with the ablation
    effect over those pairs (`AttributionResult.all_pairs`). `hook` is the hook the dictionary
    reads; `hook_out` a transcoder's output hook (module docstring)."""
    write = decoder_hook(sae, hook, hook_out)
    if top < 1:
        raise UserError(f"top must be >= 1, got {top}")
    if max_ablations < 1:
        raise UserError(f"max_ablations must be >= 1, got {max_ablations}")
    ids_1S = prompt_ids(lm, prompt)
    target_id, n_target = first_token(lm, target, "target")
    baseline_id = None if baseline is None else first_token(lm, baseline, "baseline")[0]
    if baseline_id == target_id:
        raise UserError(f"target {target!r} and baseline {baseline!r} start with the same token")
    metric = metric_per_row(target_id, baseline_id)
    grads = activation_gradients(lm, ids_1S, list(dict.fromkeys([hook, write])),
                                 lambda logits: metric(logits)[0])
    pairs = active_pairs(lm, sae, ids_1S, grads.acts[hook][0], grads.grads[write][0])
    n_pairs = len(pairs.position_N)
    top_T = pairs.attribution_N.abs().argsort(descending=True, stable=True)[:top]

    tok = lm.tokenizer
    tokens = [tok.decode([t]) for t in ids_1S[0].tolist()]
    rows = [AttributionRow(feature=int(pairs.feature_N[n]), position=int(pairs.position_N[n]),
                           token=tokens[int(pairs.position_N[n])],
                           activation=float(pairs.activation_N[n]),
                           attribution=float(pairs.attribution_N[n]), ablation_effect=None)
            for n in top_T]
    result = AttributionResult(
        prompt=prompt, target=target, baseline=baseline,
        metric_name=(f"log p({tok.decode([target_id])!r})" if baseline_id is None else
                     f"logit({tok.decode([target_id])!r}) - logit({tok.decode([baseline_id])!r})"),
        metric=float(grads.metric), n_active=n_pairs, rows=rows, target_tokens=n_target)
    if not ablate or not rows:
        return result
    sample_M = uniform_sample(n_pairs, max_ablations, sample_seed)
    population_M = torch.arange(n_pairs) if sample_M is None else sample_M
    # The listed rows are ablated too (for their column) but only the population is correlated.
    ablated_A = torch.unique(torch.cat([population_M, top_T]))
    effect_N = ablate_pairs(lm, sae, write, ids_1S, pairs, ablated_A, metric, batch_size)
    for row, n in zip(rows, top_T.tolist()):
        row.ablation_effect = float(effect_N[n])
    result.all_pairs = correlations(pairs.attribution_N[population_M],
                                    pairs.activation_N[population_M], effect_N[population_M],
                                    n_pairs, None if sample_M is None else sample_seed)
    return result
