"""Architecture families: where each TransformerLens-style hook point lives in a HF model.

A family is a *module layout*, not a model name: Mistral, Qwen2/3 and Gemma 1 share Llama's
layout, Gemma 2 shares Gemma 3's. Paths were read off transformers' own modeling code
(`models/{gemma3,llama,gpt2,gpt_neox}/modeling_*.py`, transformers 5.x).

Where `hook_attn_out` / `hook_mlp_out` sit is chosen so the hooked tensor is exactly what the
block adds to the residual stream:

- gemma3: `post_attention_layernorm` / `post_feedforward_layernorm` outputs (Gemma 2/3 normalise
  the sublayer output *before* adding it; the raw `self_attn` / `mlp` outputs are not added).
- llama: `self_attn` output (first element of its tuple) / `mlp` output.
- gpt2: `attn` output (first element) / `mlp` output (its dropout included).
- gpt_neox: `post_attention_dropout` / `post_mlp_dropout` outputs (identity in eval mode, and
  exactly the tensors summed into the residual in both parallel and sequential residual modes).

`hook_mlp_in` is the input of the MLP module (`mlp` in all four layouts): the residual stream
after the pre-MLP norm (gemma3 `pre_feedforward_layernorm`, llama `post_attention_layernorm`,
gpt2 `ln_2`, gpt_neox `post_attention_layernorm`). Running the MLP module on it gives
`hook_mlp_out` exactly for llama, gpt2 and gpt_neox (their dropouts are identities in eval
mode); for gemma3 `hook_mlp_out` is `post_feedforward_layernorm(mlp(hook_mlp_in))`: the
post-MLP norm sits between them, so a transcoder from `hook_mlp_in` to `hook_mlp_out`
replaces the MLP *and* that norm (what the block adds to the residual).

`mlp.hook_post` is the input of the MLP's down projection (the hidden neurons after the
activation function, and after the gate product for gated MLPs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from monosemantic.errors import UserError


@dataclass(frozen=True)
class Family:
    """Module paths of one layout; `attn_out`/`mlp_out`/`mlp_down` are relative to a block."""

    name: str
    layers_paths: tuple[str, ...]
    """Candidate paths of the blocks' ModuleList, tried in order (multimodal wrappers nest it)."""
    attn_out: str
    """Module whose output (first element if a tuple) is the attention contribution."""
    mlp_out: str
    """Module whose output is the MLP contribution."""
    mlp: str
    """The MLP module; its *input* is `hook_mlp_in`."""
    mlp_down: str
    """The MLP's down projection; its *input* is `mlp.hook_post`."""


FAMILIES: dict[str, Family] = {
    "gemma3": Family("gemma3",
                     ("model.layers", "model.language_model.layers", "language_model.layers"),
                     attn_out="post_attention_layernorm", mlp_out="post_feedforward_layernorm",
                     mlp="mlp", mlp_down="mlp.down_proj"),
    "llama": Family("llama", ("model.layers",), attn_out="self_attn", mlp_out="mlp", mlp="mlp",
                    mlp_down="mlp.down_proj"),
    "gpt2": Family("gpt2", ("transformer.h",), attn_out="attn", mlp_out="mlp", mlp="mlp",
                   mlp_down="mlp.c_proj"),
    "gpt_neox": Family("gpt_neox", ("gpt_neox.layers",), attn_out="post_attention_dropout",
                       mlp_out="post_mlp_dropout", mlp="mlp", mlp_down="mlp.dense_4h_to_h"),
}

# config.model_type -> layout family.
MODEL_TYPES: dict[str, str] = {
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "gemma2": "gemma3",
    "gemma": "llama",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gpt2": "gpt2",
    "gpt_neox": "gpt_neox",
}


def detect_family(model: nn.Module) -> Family:
    """The layout family of a HF causal LM, from `config.model_type`."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPES:
        supported = ", ".join(sorted(MODEL_TYPES))
        raise UserError(
            f"model_type {model_type!r} is not supported yet (supported: {supported}); "
            "pass a model of one of these types"
        )
    return FAMILIES[MODEL_TYPES[model_type]]


def blocks_path(model: nn.Module, family: Family) -> str:
    """Dotted path of the ModuleList holding the transformer blocks."""
    for path in family.layers_paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList):
            return path
    raise UserError(f"could not find the transformer blocks of this {family.name}-family model "
                    f"(looked for {', '.join(family.layers_paths)})")


def linear_in_features(module: nn.Module) -> int:
    """Input width of an nn.Linear or a GPT-2 Conv1D (whose weight is stored [in, out])."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if type(module).__name__ == "Conv1D" and isinstance(module.weight, torch.Tensor):
        return int(module.weight.shape[0])
    raise TypeError(f"expected a Linear or Conv1D down projection, got {type(module).__name__}")
