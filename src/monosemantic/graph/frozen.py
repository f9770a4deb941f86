"""The local replacement model, frozen and linear (Ameisen et al. 2025, "Circuit Tracing").

On one prompt, the real model's forward is recorded (`record`). The frozen replacement model
then recomputes the same prompt with
- attention patterns frozen: the query and key projections' outputs are the recorded ones
  (constants), so softmax(q·k) is a constant and attention is linear in its values;
- normalisation denominators frozen: every RMSNorm / LayerNorm is y0 + J·(x − x0), its
  recorded output plus the linear map with the recorded denominator (LayerNorm keeps its
  mean subtraction, which is linear);
- every MLP replaced: a replaced layer's `hook_mlp_out` is the replacement's output from the
  given feature activations (constants, the graph's nodes) plus its bias and skip term, plus
  the error node (constant); an unreplaced layer's `hook_mlp_out` is its error node (the
  recorded output, constant);
- the token embeddings given as node values.
The result is affine in (embeddings, activations, errors): at the recorded values it gives the
real model's logits, and its gradients are the graph's edges. The logit read is the output
embedding's (`lm_head`) output: before any final soft-capping (Gemma 2), which is not linear.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from monosemantic.errors import UserError
from monosemantic.graph.replacement import Replacement
from monosemantic.models import LoadedModel, edit

# family -> (query/key module relative to a block, how q and k sit in its output)
QK_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
    "llama": (("self_attn.q_proj", "whole"), ("self_attn.k_proj", "whole")),
    "gemma3": (("self_attn.q_proj", "whole"), ("self_attn.k_proj", "whole")),
    "gpt2": (("attn.c_attn", "qkv"), ),
    "gpt_neox": (("attention.query_key_value", "heads_qkv"), ),
}


@dataclass
class CleanRun:
    """The real model's forward on one prompt: what the frozen model holds constant."""

    ids_1S: Tensor
    emb_SD: Tensor
    """Output of the input embedding (the token nodes' vectors)."""
    mlp_in: dict[int, Tensor]
    """Every layer's `hook_mlp_in` [S, D]."""
    mlp_out: dict[int, Tensor]
    """Every layer's `hook_mlp_out` [S, D]."""
    head_SV: Tensor
    """The output embedding's output (logits before any soft-capping)."""
    logits_V: Tensor
    """The model's logits at the last position (for probabilities)."""
    norm_in: dict[str, Tensor] = field(default_factory=dict)
    norm_out: dict[str, Tensor] = field(default_factory=dict)
    qk: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class NodeValues:
    """The inputs of the frozen model: the graph's node values."""

    emb_SD: Tensor
    codes: dict[int, Tensor]
    """Replaced layer -> feature activations [S, F] (zero at special positions)."""
    errors: dict[int, Tensor]
    """Every layer -> its error node [S, D] (an unreplaced layer's whole MLP output)."""


@dataclass
class FrozenPass:
    """What one frozen forward exposes: `hook_mlp_in` of every layer and the logits (live,
    differentiable), and the zero offsets added at the embedding (`"emb"`) and every layer's
    `hook_mlp_out` (int keys), whose gradients are d target / d write."""

    mlp_in: dict[int, Tensor] = field(default_factory=dict)
    head_BSV: Tensor | None = None
    """[B, 1, V]: the last position only (the logit nodes' position; the output embedding
    over a large vocabulary at every position would dominate a pass's cost)."""
    deltas: dict[str | int, Tensor] = field(default_factory=dict)


def _qk_modules(lm: LoadedModel) -> dict[str, str]:
    if lm.family not in QK_MODULES:
        raise UserError(f"attention of the {lm.family!r} family is not mapped for attribution "
                        f"graphs (mapped: {', '.join(sorted(QK_MODULES))})")
    return {f"{lm.blocks_path}.{layer}.{rel}": layout for layer in range(lm.n_layers)
            for rel, layout in QK_MODULES[lm.family]}


def _norm_modules(lm: LoadedModel) -> dict[str, nn.Module]:
    """Every normalisation module whose denominator must be frozen (not the MLP outputs'
    own modules: those outputs are replaced whole)."""
    replaced = {lm.hook_point(f"blocks.{layer}.hook_mlp_out").module_path
                for layer in range(lm.n_layers)}
    norms = {}
    for path, module in lm.model.named_modules():
        name = type(module).__name__
        if path in replaced or "Norm" not in name:
            continue
        if not (isinstance(module, nn.LayerNorm) or name.endswith("RMSNorm")):
            raise UserError(f"{path} is a {name}, a normalisation the attribution graph cannot "
                            "freeze yet (LayerNorm and RMSNorm are supported)")
        norms[path] = module
    return norms


def frozen_norm(module: nn.Module, x0: Tensor, d: Tensor) -> Tensor:
    """J·d: the norm's linear map with its denominator taken from x0."""
    wide = torch.promote_types(d.dtype, torch.float32)
    d32, x32 = d.to(wide), x0.to(wide)
    if isinstance(module, nn.LayerNorm):
        scale = torch.rsqrt(x32.var(-1, unbiased=False, keepdim=True) + module.eps)
        out = (d32 - d32.mean(-1, keepdim=True)) * scale
        return (out if module.weight is None else out * module.weight.to(wide)).to(d.dtype)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    weight = getattr(module, "weight", None)
    out = d32 * scale
    if weight is not None:
        # Gemma's RMSNorms scale by (1 + w), Llama's by w.
        out = out * ((1.0 + weight.to(wide)) if type(module).__name__.startswith("Gemma")
                     else weight.to(wide))
    return out.to(d.dtype)


def _freeze_qk(out: Tensor, cached: Tensor, layout: str, n_heads: int) -> Tensor:
    """`out` with its query and key parts replaced by the recorded ones."""
    batch = out.shape[0]
    if layout == "whole":
        return cached.expand_as(out)
    if layout == "qkv":
        width = out.shape[-1] // 3
        return torch.cat([cached[..., :2 * width].expand(batch, -1, -1),
                          out[..., 2 * width:]], dim=-1)
    heads_o = out.view(*out.shape[:-1], n_heads, -1)
    heads_c = cached.view(*cached.shape[:-1], n_heads, -1)
    hd = heads_o.shape[-1] // 3
    joined = torch.cat([heads_c[..., :2 * hd].expand(batch, -1, -1, -1), heads_o[..., 2 * hd:]],
                       dim=-1)
    return joined.reshape(out.shape)


@contextmanager
def module_hooks(lm: LoadedModel, hooks: dict[str, Callable]) -> Iterator[None]:
    handles: list[RemovableHandle] = []
    try:
        for path, fn in hooks.items():
            module = lm.model.get_submodule(path)
            handles.append(module.register_forward_hook(fn, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _path_of(lm: LoadedModel, module: nn.Module | None, what: str) -> str:
    found = [path for path, m in lm.model.named_modules() if module is not None and m is module]
    if not found:
        raise UserError(f"{lm.spec} has no {what} module that attribution graphs can hook")
    return found[0]


def head_path(lm: LoadedModel) -> str:
    """Module path of the output embedding (unembedding)."""
    return _path_of(lm, lm.model.get_output_embeddings(), "output embedding")


def _emb_path(lm: LoadedModel) -> str:
    return _path_of(lm, lm.model.get_input_embeddings(), "input embedding")


@torch.no_grad()
def record(lm: LoadedModel, ids_1S: Tensor) -> CleanRun:
    """One real forward on the prompt, keeping what the frozen model needs."""
    seen: dict[str, Tensor] = {}
    run = CleanRun(ids_1S=ids_1S, emb_SD=torch.empty(0), mlp_in={}, mlp_out={},
                   head_SV=torch.empty(0), logits_V=torch.empty(0))

    def keep(store: dict[str, Tensor], key: str, inputs: bool = False) -> Callable:
        def hook(_module, args, output):
            if inputs:
                run.norm_in[key] = args[0].detach()
            store[key] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    hooks = {path: keep(run.norm_out, path, inputs=True) for path in _norm_modules(lm)}
    hooks.update({path: keep(run.qk, path) for path in _qk_modules(lm)})
    hooks[_emb_path(lm)] = keep(seen, "emb")
    hooks[head_path(lm)] = keep(seen, "head")

    def reader(store: dict[int, Tensor], layer: int) -> Callable[[Tensor], Tensor]:
        def read(act: Tensor) -> Tensor:
            store[layer] = act.detach()[0]
            return act

        return read

    edits = {}
    for layer in range(lm.n_layers):
        edits[f"blocks.{layer}.hook_mlp_in"] = reader(run.mlp_in, layer)
        edits[f"blocks.{layer}.hook_mlp_out"] = reader(run.mlp_out, layer)
    with module_hooks(lm, hooks), edit(lm, edits):
        logits = lm.model(input_ids=ids_1S.to(lm.device), use_cache=False).logits
    run.emb_SD, run.head_SV = seen["emb"][0], seen["head"][0]
    run.logits_V = logits[0, -1].float()
    return run


def freeze_hooks(lm: LoadedModel, clean: CleanRun) -> dict[str, Callable]:
    """Forward hooks (module path -> hook) freezing attention patterns (recorded queries and
    keys) and normalisation denominators (y0 + J·(x − x0)) at the recorded prompt."""
    n_heads = int(getattr(lm.model.config, "num_attention_heads", 1))

    def norm_hook(path: str, module: nn.Module) -> Callable:
        def hook(_module, args, _output):
            x0 = clean.norm_in[path]
            return clean.norm_out[path] + frozen_norm(module, x0, args[0] - x0)

        return hook

    def qk_hook(path: str, layout: str) -> Callable:
        def hook(_module, _args, output):
            return _freeze_qk(output, clean.qk[path], layout, n_heads)

        return hook

    hooks = {path: norm_hook(path, module) for path, module in _norm_modules(lm).items()}
    hooks.update({path: qk_hook(path, layout) for path, layout in _qk_modules(lm).items()})
    return hooks


def frozen_forward(lm: LoadedModel, clean: CleanRun, replacement: Replacement,
                   values: NodeValues, batch: int = 1, deltas: bool = False) -> FrozenPass:
    """One forward of the frozen replacement model on `batch` copies of the prompt. With
    `deltas`, zero offsets requiring grad are added at the embedding and every layer's
    `hook_mlp_out` (call under `torch.enable_grad`)."""
    out = FrozenPass()
    seq, width = clean.emb_SD.shape
    if deltas:
        for key in ["emb", *range(lm.n_layers)]:
            out.deltas[key] = torch.zeros(batch, seq, width, device=clean.emb_SD.device,
                                          dtype=clean.emb_SD.dtype, requires_grad=True)

    def plus_delta(key: str | int, value: Tensor) -> Tensor:
        value = value.expand(batch, *value.shape[-2:])
        return value + out.deltas[key] if key in out.deltas else value

    def emb_hook(_module, _args, _output):
        return plus_delta("emb", values.emb_SD[None])

    def head_hook(_module, _args, output):
        out.head_BSV = output

    hooks = freeze_hooks(lm, clean)
    hooks[_emb_path(lm)] = emb_hook
    hooks[head_path(lm)] = head_hook
    codes = {layer: c[None] for layer, c in values.codes.items()}

    def read_in(layer: int) -> Callable[[Tensor], Tensor]:
        def read(act: Tensor) -> Tensor:
            out.mlp_in[layer] = act
            return act

        return read

    def write_out(layer: int) -> Callable[[Tensor], Tensor]:
        def write(act: Tensor) -> Tensor:
            value = values.errors[layer][None].to(act.dtype)
            if layer in replacement.layers:
                value = replacement.output(layer, codes, out.mlp_in[layer]).to(act.dtype) + value
            return plus_delta(layer, value)

        return write

    edits = {}
    for layer in range(lm.n_layers):
        edits[f"blocks.{layer}.hook_mlp_in"] = read_in(layer)
        edits[f"blocks.{layer}.hook_mlp_out"] = write_out(layer)
    ids_BS = clean.ids_1S.to(lm.device).expand(batch, -1)
    with module_hooks(lm, hooks), edit(lm, edits):
        lm.model(input_ids=ids_BS, use_cache=False, logits_to_keep=1)
    return out
