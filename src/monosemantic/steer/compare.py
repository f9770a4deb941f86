"""`steer_compare`: unsteered vs steered continuations of a prompt (same seed, same sampling)
and two side-effect figures: the KL of next-token distributions over the prompt and the loss
change on a fixed neutral text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.models import LoadedModel
from monosemantic.sae import SAE
from monosemantic.steer.edits import DEFAULT_MAX_MULTIPLIER, FeatureEdit, format_edit
from monosemantic.steer.steering import Mode, steering

NEUTRAL_TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. Visitors may "
    "borrow up to five books at a time for three weeks. The reading room on the second floor is "
    "quiet, and a small cafe near the entrance sells coffee and sandwiches. On weekends the "
    "children's section hosts a story hour."
)
"""Plain prose far from any one concept, on which steering should change the loss little."""


@dataclass
class SteerResult:
    """Outcome of `steer_compare`."""

    prompt: str
    edits: list[str]
    """The edits as written (`123=10x`)."""
    mode: str
    unsteered: str
    """The continuation without steering (prompt not included)."""
    steered: str
    """The continuation with steering, same seed and sampling."""
    kl_next_token: float
    """Mean over the prompt's positions of KL(clean || steered) of the next-token distribution
    (nats)."""
    neutral_loss_delta: float
    """Steered minus clean mean next-token cross-entropy on the neutral text (nats)."""
    neutral_loss_clean: float
    """Clean mean next-token cross-entropy on the neutral text (nats)."""
    include_special: bool = False
    """Whether BOS and other special-token positions were steered too."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_ids(lm: LoadedModel, text: str) -> Tensor:
    """[1, S] ids: BOS (else EOS) then the text's tokens (how contexts were harvested)."""
    from monosemantic.data.packing import bos_token_id

    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError("the prompt is empty: give some text")
    return torch.tensor([[bos_token_id(lm.tokenizer), *ids]], device=lm.device)


@torch.no_grad()
def _logits(lm: LoadedModel, ids_1S: Tensor) -> Tensor:
    return lm.model(input_ids=ids_1S, use_cache=False).logits[0].float()


def kl_per_position(clean_SV: Tensor, steered_SV: Tensor) -> Tensor:
    """KL(clean || steered) of the next-token distributions at each position, in nats [S]."""
    logp_SV = torch.log_softmax(clean_SV.float(), dim=-1)
    logq_SV = torch.log_softmax(steered_SV.float(), dim=-1)
    return (logp_SV.exp() * (logp_SV - logq_SV)).sum(-1)


def next_token_loss(logits_SV: Tensor, ids_S: Tensor) -> float:
    """Mean cross-entropy of predicting ids[1:] from logits[:-1] (nats)."""
    return float(torch.nn.functional.cross_entropy(logits_SV[:-1].float(), ids_S[1:]))


@torch.no_grad()
def _generate(lm: LoadedModel, ids_1S: Tensor, max_new_tokens: int, temperature: float,
              top_p: float, seed: int) -> str:
    torch.manual_seed(seed)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # torch types nn.Module's dynamic attributes as Tensor | Module, so HF's `generate` reads
    # as a Tensor to the type checker.
    out_1T = lm.model.generate(  # pyright: ignore[reportCallIssue]
        input_ids=ids_1S, attention_mask=torch.ones_like(ids_1S),
        max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
    return tok.decode(out_1T[0, ids_1S.shape[1]:], skip_special_tokens=True)


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise UserError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")


def steer_compare(lm: LoadedModel, sae: SAE, hook: str, prompt: str, edits: list[FeatureEdit], *,
                  mode: Mode = "clamp", max_act_F: Tensor | None = None, max_new_tokens: int = 40,
                  temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                  neutral_text: str | None = None, positions: slice | None = None,
                  include_special: bool = False,
                  max_multiplier: float = DEFAULT_MAX_MULTIPLIER,
                  hook_out: str | None = None) -> SteerResult:
    """Continue `prompt` without and with the edits (greedy at temperature 0) and measure the
    side effects; see `SteerResult` for the figures. BOS and other special tokens are not
    steered unless `include_special`. `hook_out`: a transcoder's output hook (`steering`)."""
    check_sampling(max_new_tokens, temperature, top_p)
    ids_1S = prompt_ids(lm, prompt)
    neutral_1N = prompt_ids(lm, neutral_text or NEUTRAL_TEXT)

    def steered():
        return steering(lm, sae, hook, edits, mode=mode, max_act_F=max_act_F,
                        positions=positions, include_special=include_special,
                        max_multiplier=max_multiplier, hook_out=hook_out)

    with steered():  # validate the edits before spending time on the clean runs
        pass
    clean_SV, clean_neutral_NV = _logits(lm, ids_1S), _logits(lm, neutral_1N)
    unsteered = _generate(lm, ids_1S, max_new_tokens, temperature, top_p, seed)
    with steered():
        steered_SV, steered_neutral_NV = _logits(lm, ids_1S), _logits(lm, neutral_1N)
        steered_text = _generate(lm, ids_1S, max_new_tokens, temperature, top_p, seed)
    clean_loss = next_token_loss(clean_neutral_NV, neutral_1N[0])
    return SteerResult(
        prompt=prompt, edits=[format_edit(e) for e in edits], mode=mode, unsteered=unsteered,
        steered=steered_text, kl_next_token=float(kl_per_position(clean_SV, steered_SV).mean()),
        neutral_loss_delta=next_token_loss(steered_neutral_NV, neutral_1N[0]) - clean_loss,
        neutral_loss_clean=clean_loss, include_special=include_special)
