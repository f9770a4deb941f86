"""`steering`: a context manager inside which every forward / generate of `lm.model` is steered.

Two modes, often confused, named apart:

- `clamp` (Scaling Monosemanticity): split x = SAE(x) + err(x), err computed from the unedited
  x; set the chosen codes to the given values, decode, add err back. Only the chosen codes change,
  so the result is x + Σ_i (c_i − f_i(x))·W_dec[i] exactly; the other codes are those of the
  unedited x. For topk / batchtopk SAEs this means the clamp bypasses the top-k selection: a
  clamped feature outside the top k is still set, and clamping one inside it to 0 does not let the
  (k+1)-th feature in.
- `add`: x + Σ_i c_i·W_dec[i], whatever the codes are (a steering vector along decoder rows).

Values are raw code units after `resolve_edits` (`unit="max"`: value × the feature's max
activation). `positions` is a slice of absolute token positions: during `generate` with a KV
cache they index the whole sequence (prompt + generated tokens, padding columns included), so a
span over the prompt stays fixed as tokens are added; `None` steers every position, generated
ones included (special tokens aside, below).

BOS and other special-token positions (the tokenizer's `all_special_ids`) are not steered by
default: the harvest left them out, so the SAE never saw their activations, and their norms dwarf
the rest. `include_special=True` steers them too. They are recognised from the `input_ids` of
each forward, so a special token generated during `generate` (an EOS) is skipped as well; a
forward given only `inputs_embeds` has no ids, and all its positions are steered.

A transcoder reads one hook (`hook`, e.g. `hook_mlp_in`) and its decoder writes another
(`hook_out`, e.g. `hook_mlp_out`). In the same forward its codes f are computed from the
activation x at `hook` (left unchanged) and the true activation y at `hook_out` becomes
y + Σ_i (c_i − f_i(x))·W_dec[i] (clamp) or y + Σ_i c_i·W_dec[i] (add): only the change the
edited codes make to the transcoder's output ŷ(x) (its skip term and the other codes cancel),
so the transcoder's error y − ŷ(x) is kept as an SAE's is, and a no-op edit is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor

from monosemantic.activations.model_rows import special_token_ids
from monosemantic.errors import UserError
from monosemantic.models import HookPoint, LoadedModel, edit, read_then_write
from monosemantic.sae import SAE
from monosemantic.steer.edits import DEFAULT_MAX_MULTIPLIER, FeatureEdit, resolve_edits

Mode = Literal["clamp", "add"]
MODES: tuple[str, ...] = ("clamp", "add")


def check_span(positions: slice | None) -> slice | None:
    """`positions` as a slice with non-negative start/stop and step 1, or None (every position)."""
    if positions is None:
        return None
    if not isinstance(positions, slice):
        raise UserError(f"positions must be a slice (e.g. slice(0, 5)) or None, got {positions!r}")
    if positions.step not in (None, 1):
        raise UserError(f"positions must be a contiguous span (step 1), got step {positions.step}")
    for name in ("start", "stop"):
        value = getattr(positions, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise UserError(f"positions.{name} must be a non-negative integer or None (absolute "
                            f"positions: during generation the length is not known), got {value!r}")
    start = positions.start or 0
    if positions.stop is not None and positions.stop <= start:
        raise UserError(f"positions {start}:{positions.stop} is an empty span")
    return slice(start, positions.stop)


def decoder_hook(sae: SAE, hook: str, hook_out: str | None) -> str:
    """The hook `sae`'s decoder rows are directions of: a transcoder's `hook_out` (it reads
    `hook`), an SAE's own `hook`."""
    if getattr(sae.cfg, "is_transcoder", False):
        if hook_out is None:
            raise UserError(f"this dictionary is a transcoder reading {hook}: give hook_out, the "
                            "hook its decoder writes (RunDir.hook_out, e.g. "
                            "blocks.6.hook_mlp_out)")
        if hook_out == hook:
            raise UserError(f"a transcoder reads and writes two hooks; both are {hook}")
        return hook_out
    if hook_out is not None and hook_out != hook:
        raise UserError(f"hook_out is for transcoders; this SAE reads and writes {hook}, not "
                        f"{hook_out}: leave hook_out out")
    return hook


def steering_delta_fn(sae: SAE, ids_E: Tensor, values_E: Tensor, mode: str
                      ) -> Callable[[Tensor], Tensor]:
    """fn(x_ND) -> the change Δ_ND (float32, on the SAE's device) that the edits make to the
    dictionary's output for input rows x (for an SAE, to x itself)."""
    if mode not in MODES:
        raise UserError(f"unknown steering mode {mode!r}: use 'clamp' (set codes, error term "
                        "kept) or 'add' (add value × decoder row)")
    W_dec_FD = sae.W_dec_FD
    ids_E = ids_E.to(W_dec_FD.device)
    values_E = values_E.to(W_dec_FD.device, torch.float32)
    rows_ED = W_dec_FD.detach()[ids_E].float()
    add_D = values_E @ rows_ED

    def clamp(x_ND: Tensor) -> Tensor:
        f_NE = sae.encode(x_ND)[:, ids_E].float()
        return (values_E - f_NE) @ rows_ED

    def add(x_ND: Tensor) -> Tensor:
        return add_D.expand(x_ND.shape[0], -1)

    return clamp if mode == "clamp" else add


class _Positions:
    """What each forward of the top-level model holds (a pre-hook): the absolute position of its
    first token, and which of its tokens are special."""

    def __init__(self, special_ids: list[int]) -> None:
        self.offset = 0
        self._next = 0  # where a forward that continues this one starts
        self._special_ids = torch.tensor(special_ids, dtype=torch.long)
        self.special_BS: Tensor | None = None
        """Bool [B, S] of the current forward's special tokens; None without input_ids."""

    def pre_hook(self, _module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        tokens = ids if ids is not None else kwargs.get("inputs_embeds")
        self.special_BS = None
        if isinstance(ids, Tensor) and ids.dim() == 2 and len(self._special_ids):
            self.special_BS = torch.isin(ids, self._special_ids.to(ids.device))
        if tokens is None:
            raise ValueError("a steered forward needs input_ids or inputs_embeds")
        n_new = tokens.shape[1]
        mask = kwargs.get("attention_mask")
        # transformers 5 renamed the forward's `past_key_values` to `cache`.
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        cache_position = kwargs.get("cache_position")
        # generate() passes the mask of the whole sequence so far when it has one; it is the
        # reliable length (a sliding-window cache's own length stops growing at the window).
        if isinstance(mask, Tensor) and mask.dim() == 2:
            self.offset = mask.shape[1] - n_new
        elif isinstance(cache_position, Tensor) and cache_position.numel() > 0:
            self.offset = int(cache_position.reshape(-1)[0])
        elif past is not None and hasattr(past, "get_seq_length") and past.get_seq_length() > 0:
            # A cache with content: this forward continues the previous one. Counted here, not
            # read from the cache, whose length stops at a sliding window.
            self.offset = self._next
        else:
            self.offset = 0
        self._next = self.offset + n_new

    def mask_S(self, n: int, span: slice, device: torch.device) -> Tensor:
        pos_S = torch.arange(self.offset, self.offset + n, device=device)
        keep_S = pos_S >= span.start
        if span.stop is not None:
            keep_S &= pos_S < span.stop
        return keep_S


    def keep_BS(self, n_batch: int, n_seq: int, span: slice | None, skip_special: bool,
                device: torch.device) -> Tensor | None:
        """Bool [B, S] of the positions to steer in the current forward; None: all of them."""
        keep_BS = None
        if span is not None:
            keep_BS = self.mask_S(n_seq, span, device)[None, :].expand(n_batch, n_seq)
        if skip_special and self.special_BS is not None:
            if tuple(self.special_BS.shape) != (n_batch, n_seq):
                raise RuntimeError(f"steering hook saw activations of {n_batch} x {n_seq} tokens "
                                   f"but the model was given {tuple(self.special_BS.shape)} ids")
            not_special_BS = ~self.special_BS.to(device)
            keep_BS = not_special_BS if keep_BS is None else keep_BS & not_special_BS
        return keep_BS


@contextmanager
def steering(lm: LoadedModel, sae: SAE, hook: str, edits: list[FeatureEdit], *,
             mode: Mode = "clamp", max_act_F: Tensor | None = None,
             positions: slice | None = None, include_special: bool = False,
             max_multiplier: float = DEFAULT_MAX_MULTIPLIER,
             hook_out: str | None = None) -> Iterator[None]:
    """Steer every forward / generate of `lm.model` inside the block (hooks removed on exit,
    also when the block raises). See the module docstring for the modes, `positions`,
    `include_special` (BOS and other special tokens are left alone unless it is True) and
    `hook_out` (a transcoder's output hook; `hook` is always the hook the dictionary reads).

        with steering(lm, sae, "blocks.6.hook_resid_post", [parse_edit("123=10x")],
                      max_act_F=max_act_F):
            out = lm.model.generate(ids, max_new_tokens=20)
    """
    write = decoder_hook(sae, hook, hook_out)
    ids_E, values_E = resolve_edits(list(edits), sae.cfg.n_features, max_act_F, max_multiplier)
    span = check_span(positions)
    delta_fn = steering_delta_fn(sae, ids_E, values_E, mode)
    skip_special = not include_special
    tracker = _Positions(special_token_ids(lm.tokenizer) if skip_special else [])
    sae_device = sae.W_dec_FD.device

    def apply(act_BSD: Tensor, x_BSD: Tensor) -> Tensor:
        """`act` (at the decoder's hook) plus the change the edits make, from the codes of `x`
        (at the hook the dictionary reads; the same tensor for an SAE)."""
        n_batch, n_seq, width = act_BSD.shape
        x_ND = x_BSD.reshape(n_batch * n_seq, -1).to(sae_device, torch.float32)
        delta_BSD = delta_fn(x_ND).reshape(n_batch, n_seq, width)
        keep_BS = tracker.keep_BS(n_batch, n_seq, span, skip_special, delta_BSD.device)
        if keep_BS is not None:
            # where, not a product: a non-finite delta at a skipped position stays out.
            delta_BSD = torch.where(keep_BS[:, :, None], delta_BSD, 0.0)
        return act_BSD + delta_BSD.to(act_BSD.device, act_BSD.dtype)

    hook_fns: dict[str | HookPoint, Callable[[Tensor], Tensor]] = (
        {hook: lambda act_BSD: apply(act_BSD, act_BSD)} if write == hook
        else read_then_write(lm, hook, write, apply))
    handle = None
    try:
        if span is not None or skip_special:
            handle = lm.model.register_forward_pre_hook(tracker.pre_hook, with_kwargs=True)
        with edit(lm, hook_fns):
            yield
    finally:
        if handle is not None:
            handle.remove()
