"""The model's own next-token loss with the SAE spliced in at its hook point.

Three forwards per batch of contexts: clean; *spliced* (the hooked activation replaced by the
SAE's reconstruction, or a transcoder's prediction from its input site); *zero-ablated* (the
hooked activation replaced by zeros). Both edits apply
at every position except BOS / special tokens, which the activation store excludes from training
(their norms dwarf the rest), so the SAE never saw them. Formulas: `monosemantic.evals.loss`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.evals.loss import SplicedLossAccumulator, ce_and_kl, next_token_targets

if TYPE_CHECKING:
    from monosemantic.data import ContextBatch
    from monosemantic.models import HookPoint, LoadedModel
    from monosemantic.sae import SAE


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids left unspliced: the tokenizer's special tokens (BOS, EOS, pad, ...)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        ids.add(int(bos))
    return sorted(int(i) for i in ids)


def sae_reconstruct(sae: SAE, act_BSD: torch.Tensor) -> torch.Tensor:
    """`decode(encode(x))` on the last dim of any-shaped activations, in the SAE's dtype/device
    (plus a skip transcoder's skip term; a transcoder's output has its target's width).

    Uses the inference path (`encode`/`decode`), not `forward`, so batch-level rules such as
    BatchTopK's batch top-k do not apply at evaluation.
    """
    param = next(iter(sae.parameters()), None) if hasattr(sae, "parameters") else None
    dtype = param.dtype if param is not None else act_BSD.dtype
    x_ND = act_BSD.reshape(-1, act_BSD.shape[-1]).to(dtype)
    x_hat_ND = sae.decode(sae.encode(x_ND))
    add_skip = getattr(sae, "add_skip", None)  # duck-typed SAEs (tests) have none
    if add_skip is not None:
        x_hat_ND = add_skip(x_hat_ND, x_ND)
    return x_hat_ND.reshape(*act_BSD.shape[:-1], -1).to(act_BSD.dtype)


def _splice_edits(lm: LoadedModel, sae: SAE, hook: str, hook_in: str | None,
                  splice_BS: torch.Tensor
                  ) -> dict[str | HookPoint, Callable[[torch.Tensor], torch.Tensor]]:
    """The edits that splice `sae` in at `hook`. A transcoder's input is read at `hook_in`
    earlier in the same forward (left unchanged there) and its output replaces `hook`."""
    from monosemantic.models import read_then_write

    if hook_in is None:
        return {hook: _replace_at(splice_BS, lambda a: sae_reconstruct(sae, a))}

    def predicted(out_BSD: torch.Tensor, in_BSD: torch.Tensor) -> torch.Tensor:
        return _replace_at(splice_BS, lambda _a: sae_reconstruct(sae, in_BSD))(out_BSD)

    return read_then_write(lm, hook_in, hook, predicted)


def _replace_at(mask_BS: torch.Tensor, make: Callable[[torch.Tensor], torch.Tensor]):
    """Hook function: `make(act)` where `mask_BS`, the original activation elsewhere."""

    def fn(act_BSD: torch.Tensor) -> torch.Tensor:
        if act_BSD.shape[:2] != mask_BS.shape:
            raise RuntimeError(f"hooked activation {tuple(act_BSD.shape)} does not match the "
                               f"batch {tuple(mask_BS.shape)}; is the hook inside a cached "
                               "generation step?")
        return torch.where(mask_BS.unsqueeze(-1), make(act_BSD), act_BSD)

    return fn


def _batch_tensors(batch: ContextBatch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(tokens_BS, attention_mask_BS or None) of a `ContextBatch` or a `[B, S]` LongTensor."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    return batch.tokens, getattr(batch, "attention_mask", None)


def _logits(lm: LoadedModel, tokens_BS: torch.Tensor,
            attention_mask_BS: torch.Tensor | None) -> torch.Tensor:
    out = lm.model(input_ids=tokens_BS, attention_mask=attention_mask_BS, use_cache=False)
    return out.logits


def spliced_loss(
    lm: LoadedModel,
    sae: SAE,
    hook: str | HookPoint,
    batches: Iterable[ContextBatch | torch.Tensor],
    keep_token_ids: Sequence[int] | None = None,
    on_batch: Callable[[int], object] | None = None,
    hook_in: str | None = None,
) -> dict[str, float | int]:
    """CE clean / spliced / zero-ablated, loss recovered, KL and ΔCE over `batches`.

    A transcoder (`hook_in` given: the hook it reads) replaces `hook` by its prediction from
    the activation at `hook_in` of the same forward; zero-ablated then zeroes `hook`.

    Scored: predictions made at spliced positions whose target is not a kept (special) token.

    `lm` is a `LoadedModel`, `hook` a hook name or `HookPoint`, `batches` yields
    `ContextBatch`es (or `[B, S]` token tensors). `keep_token_ids` are left unedited (default:
    the tokenizer's special tokens). `on_batch(n_tokens)` is called after each batch (progress).
    """
    name = hook if isinstance(hook, str) else hook.name
    return spliced_loss_all(lm, [Splice(sae, name, hook_in)], batches, keep_token_ids,
                            on_batch)


@dataclass(frozen=True)
class Splice:
    """One dictionary spliced into the forward: `sae` replaces the activation at `hook`, from
    that activation (an SAE) or from the one at `hook_in` of the same forward (a transcoder)."""

    sae: SAE
    hook: str
    hook_in: str | None = None


def spliced_loss_all(
    lm: LoadedModel,
    splices: Sequence[Splice],
    batches: Iterable[ContextBatch | torch.Tensor],
    keep_token_ids: Sequence[int] | None = None,
    on_batch: Callable[[int], object] | None = None,
) -> dict[str, float | int]:
    """`spliced_loss` with every splice of `splices` in the same forward (e.g. a transcoder at
    every layer: each reads its input site as the spliced forward computes it, so upstream
    replacements reach it); zero-ablated zeroes every spliced hook at once."""
    hooks = [s.hook for s in splices]
    if len(set(hooks)) != len(hooks) or set(hooks) & {s.hook_in for s in splices}:
        raise ValueError(f"splices write the same hook twice, or read a hook another writes: "
                         f"{[(s.hook_in, s.hook) for s in splices]}")

    def splice_edits(splice_BS: torch.Tensor) -> dict[str | HookPoint, EditFn]:
        edits: dict[str | HookPoint, EditFn] = {}
        for s in splices:
            edits.update(_splice_edits(lm, s.sae, s.hook, s.hook_in, splice_BS))
        return edits

    return spliced_loss_with(
        lm, batches,
        lambda splice_BS: {h: _replace_at(splice_BS, torch.zeros_like) for h in hooks},
        splice_edits, keep_token_ids, on_batch)


EditFn = Callable[[torch.Tensor], torch.Tensor]
EditsAt = Callable[[torch.Tensor], "dict[str | HookPoint, EditFn]"]
"""Given the positions to edit (`splice_BS`, bool [B, S]), the edits of one forward."""


def spliced_loss_with(lm: LoadedModel, batches: Iterable[ContextBatch | torch.Tensor],
                      zero_edits: EditsAt, splice_edits: EditsAt,
                      keep_token_ids: Sequence[int] | None = None,
                      on_batch: Callable[[int], object] | None = None,
                      ) -> dict[str, float | int]:
    """`spliced_loss` for any edits: the clean forward, one with `zero_edits(splice_BS)` and
    one with `splice_edits(splice_BS)`, scored as `spliced_loss` scores them."""
    from monosemantic.models import edit

    keep_ids = special_token_ids(lm.tokenizer) if keep_token_ids is None else list(keep_token_ids)
    acc = SplicedLossAccumulator()
    with torch.no_grad():
        for batch in batches:
            tokens_BS, attention_BS = _batch_tensors(batch)
            tokens_BS = tokens_BS.to(lm.device)
            splice_BS = ~torch.isin(tokens_BS, torch.tensor(keep_ids, dtype=tokens_BS.dtype,
                                                            device=tokens_BS.device))
            if attention_BS is not None:
                attention_BS = attention_BS.to(lm.device)
                splice_BS &= attention_BS.bool()
            targets_BS, score_BS = next_token_targets(tokens_BS, splice_BS)
            # Predictions of a special token (the next document's BOS, padding) are not scored.
            score_BS[:, :-1] &= splice_BS[:, 1:]

            with edit(lm, zero_edits(splice_BS)):
                logits_zero_BSV = _logits(lm, tokens_BS, attention_BS)
            ce_zero_BS, _, _ = ce_and_kl(logits_zero_BSV, None, targets_BS)
            del logits_zero_BSV  # at most two [B, S, V] logits alive: V is 262k for Gemma

            logits_clean_BSV = _logits(lm, tokens_BS, attention_BS)
            with edit(lm, splice_edits(splice_BS)):
                logits_spliced_BSV = _logits(lm, tokens_BS, attention_BS)
            ce_clean_BS, ce_spliced_BS, kl_BS = ce_and_kl(logits_clean_BSV, logits_spliced_BSV,
                                                          targets_BS)
            del logits_clean_BSV, logits_spliced_BSV
            acc.update(ce_clean_BS, ce_spliced_BS, ce_zero_BS, kl_BS, score_BS)
            if on_batch is not None:
                on_batch(int(tokens_BS.numel()))
    return acc.result()
