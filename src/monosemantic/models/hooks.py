"""One hook mechanism for reading (`capture`), editing (`edit`) and gradients
(`activation_gradients`). Every hook is removed in `finally`, also when the forward raises.

    acts = capture(lm, ids_BS, ["blocks.6.hook_resid_post"])        # stops after block 6
    with edit(lm, {"blocks.6.hook_resid_post": lambda a: a + 8 * v_D}):
        out = lm.model.generate(ids_BS, max_new_tokens=20)          # steered generation
    g = activation_gradients(lm, ids_BS, ["blocks.6.hook_resid_post"],
                             lambda logits: logits[0, -1, tgt] - logits[0, -1, base])
    g.grads["blocks.6.hook_resid_post"]                              # d metric / d activation

Gradients can also be taken by hand: edits are differentiable, so an edit fn may keep a
reference (e.g. `lambda a: a + delta` with `delta` requiring grad) and the caller calls
`backward()` on a metric of the logits; `activation_gradients` packages exactly that.

Order: our hooks are registered with `prepend=True`, so they run before transformers' own
output-recording hooks (`output_hidden_states` then reflects edits). Among our hooks on the same
point the most recently installed runs first: `activation_gradients` inside an `edit` sees
(and differentiates w.r.t.) the activation *before* that edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from monosemantic.errors import UserError
from monosemantic.models.hook_points import HookPoint

if TYPE_CHECKING:
    from monosemantic.models.loading import LoadedModel

ActFn = Callable[[Tensor], "Tensor | None"]
"""Called with the activation; returns a replacement tensor, or None to leave it unchanged."""


class _StopForward(Exception):
    """Raised from the last needed hook so `capture` skips the rest of the forward."""


def install_hook(model: torch.nn.Module, point: HookPoint, fn: ActFn) -> RemovableHandle:
    """Call `fn` on `point`'s activation in every forward; the caller removes the handle."""
    module = model.get_submodule(point.module_path)
    if point.reads_input:

        def pre_hook(_module, args, kwargs):
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            if "hidden_states" in kwargs:
                new = fn(kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})
            raise RuntimeError(f"{point.module_path} was called without a hidden-state input")

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True, prepend=True)

    def hook(_module, _args, output):
        if isinstance(output, Tensor):
            return fn(output)
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
            new = fn(output[0])
            return None if new is None else (new, *output[1:])
        raise UserError(f"module {point.module_path!r} returns {type(output).__name__}, not a "
                        "tensor; hook one of its submodules instead")

    return module.register_forward_hook(hook, prepend=True)


@contextmanager
def _installed(lm: LoadedModel, fns: Mapping[HookPoint, ActFn]) -> Iterator[None]:
    handles: list[RemovableHandle] = []
    try:
        for point, fn in fns.items():
            handles.append(install_hook(lm.model, point, fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _points(lm: LoadedModel, names: Iterable[str | HookPoint]) -> dict[str, HookPoint]:
    """Given names (or HookPoints) -> HookPoints, keyed by the name as given, duplicates dropped."""
    out: dict[str, HookPoint] = {}
    for name in names:
        key = name.name if isinstance(name, HookPoint) else name
        out[key] = name if isinstance(name, HookPoint) else lm.hook_point(name)
    if not out:
        raise UserError("no hook point given")
    return out


def _run(lm: LoadedModel, input_ids_BS: Tensor, attention_mask_BS: Tensor | None):
    ids_BS = input_ids_BS.to(lm.device)
    mask_BS = None if attention_mask_BS is None else attention_mask_BS.to(lm.device)
    return lm.model(input_ids=ids_BS, attention_mask=mask_BS, use_cache=False)


def capture(lm: LoadedModel, input_ids_BS: Tensor, names: Iterable[str | HookPoint],
            attention_mask_BS: Tensor | None = None, *,
            stop_early: bool = True) -> dict[str, Tensor]:
    """Activations `[B, S, width]` at `names` (keys: the names as given), without gradients.

    The forward stops as soon as every requested hook has fired, so later blocks and the
    unembedding are never computed (`stop_early=False` runs the whole model). A module that
    fires twice in one forward is an error (its activation would be ambiguous).
    """
    points = _points(lm, names)
    acts: dict[str, Tensor] = {}

    def reader(key: str) -> ActFn:
        def read(act: Tensor) -> None:
            if key in acts:
                raise UserError(f"hook point {key!r} fired twice in one forward; hook a module "
                                "that runs once per forward")
            acts[key] = act.detach()
            if stop_early and len(acts) == len(points):
                raise _StopForward

        return read

    with _installed(lm, {p: reader(k) for k, p in points.items()}), torch.no_grad():
        try:
            _run(lm, input_ids_BS, attention_mask_BS)
        except _StopForward:
            pass
    missing = [k for k in points if k not in acts]
    if missing:
        raise UserError(f"hook point(s) {missing} were never reached in the forward pass")
    return acts


@contextmanager
def edit(lm: LoadedModel, edits: Mapping[str | HookPoint, Callable[[Tensor], Tensor]]
         ) -> Iterator[None]:
    """While active, every forward (also `lm.model.generate`) replaces each hooked activation
    by `fn(act_BSD)`. Differentiable: gradients flow through `fn` and into its own parameters
    (the model's parameters are frozen). With a KV cache, `generate` calls `fn` on the new
    positions only (`S` = 1 after the prompt).
    """

    def checked(point: HookPoint, fn: Callable[[Tensor], Tensor]) -> ActFn:
        def apply(act: Tensor) -> Tensor:
            new = fn(act)
            if not isinstance(new, Tensor) or new.shape != act.shape:
                got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
                raise UserError(f"edit of {point.name!r} must return a tensor of shape "
                                f"{tuple(act.shape)}, got {got}")
            return new

        return apply

    fns = {}
    for name, fn in edits.items():
        point = name if isinstance(name, HookPoint) else lm.hook_point(name)
        fns[point] = checked(point, fn)
    with _installed(lm, fns):
        yield


def read_then_write(lm: LoadedModel, read: str, write: str,
                    fn: Callable[[Tensor, Tensor], Tensor]
                    ) -> dict[str | HookPoint, Callable[[Tensor], Tensor]]:
    """Edits for `edit` that leave the activation at `read` unchanged and replace the one at
    `write` by `fn(act_write_BSD, act_read_BSD)`, both of the same forward: how a transcoder,
    which reads one site and writes a later one, is spliced in or steered."""
    if lm.hook_point(read).layer > lm.hook_point(write).layer:
        raise UserError(f"{read} runs after {write}: a transcoder's input must come first")
    seen: dict[str, Tensor] = {}

    def keep(act_BSD: Tensor) -> Tensor:
        seen["read"] = act_BSD
        return act_BSD

    def replace(act_BSD: Tensor) -> Tensor:
        if "read" not in seen:
            raise RuntimeError(f"{write} fired before {read} in the forward")
        return fn(act_BSD, seen.pop("read"))

    return {read: keep, write: replace}


@dataclass
class ActivationGrads:
    """Result of `activation_gradients`; tensors detached, keyed by the names as given."""

    metric: Tensor
    """The scalar metric."""
    logits_BSV: Tensor
    """The model's logits."""
    acts: dict[str, Tensor]
    """Activations at each hook point, `[B, S, width]`."""
    grads: dict[str, Tensor]
    """d metric / d activation, same shapes as `acts` (zeros where the metric does not depend)."""


def activation_gradients(lm: LoadedModel, input_ids_BS: Tensor, names: Iterable[str | HookPoint],
                         metric_fn: Callable[[Tensor], Tensor],
                         attention_mask_BS: Tensor | None = None) -> ActivationGrads:
    """Full forward, `metric = metric_fn(logits_BSV)` (a scalar), and the gradient of the metric
    w.r.t. each hooked activation (for attribution: `attr = act · grad` along a direction).

    Works with frozen model parameters: each activation `a` is replaced by `a + δ` with `δ = 0`
    requiring grad, so d metric/dδ = d metric/da and no parameter gradients are computed.
    Combine with `edit` (outside this call) to differentiate an edited model.
    """
    points = _points(lm, names)
    acts: dict[str, Tensor] = {}
    deltas: dict[str, Tensor] = {}

    def tracker(key: str) -> ActFn:
        def track(act: Tensor) -> Tensor:
            if key in deltas:
                raise UserError(f"hook point {key!r} fired twice in one forward")
            acts[key] = act.detach()
            deltas[key] = torch.zeros_like(act, requires_grad=True)
            return act + deltas[key]

        return track

    with _installed(lm, {p: tracker(k) for k, p in points.items()}), torch.enable_grad():
        logits_BSV = _run(lm, input_ids_BS, attention_mask_BS).logits
        metric = metric_fn(logits_BSV)
        if metric.numel() != 1:
            raise UserError(f"metric_fn must return a scalar, got shape {tuple(metric.shape)}")
        if not metric.requires_grad:
            raise UserError("metric_fn's result does not depend on the logits it was given")
        keys = list(deltas)
        grads = torch.autograd.grad(metric, [deltas[k] for k in keys], allow_unused=True)
    missing = [k for k in points if k not in deltas]
    if missing:
        raise UserError(f"hook point(s) {missing} were never reached in the forward pass")
    return ActivationGrads(
        metric=metric.detach(), logits_BSV=logits_BSV.detach(), acts=acts,
        grads={k: torch.zeros_like(acts[k]) if g is None else g for k, g in zip(keys, grads)},
    )
