"""A small random transcoder (hook_mlp_in -> hook_mlp_out) and a run folder holding it, for the
steering / attribution / inspection tests: no harvest or training needed."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from monosemantic.sae import SAE, SAEConfig, create_sae, save_sae

HOOK_IN, HOOK_OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"


def random_transcoder(d_in: int, d_out: int, n_features: int = 64, k: int = 4,
                      skip: bool = True, seed: int = 0) -> SAE:
    """A frozen topk transcoder with random weights, a nonzero b_dec and (with `skip`) a
    nonzero skip term, so that a test which forgot either would see it."""
    torch.manual_seed(seed)
    cfg = SAEConfig(architecture="topk", d_in=d_in, d_out=d_out, n_features=n_features, k=k,
                    skip=skip, apply_b_dec_to_input=False)
    tc = create_sae(cfg)
    with torch.no_grad():
        tc.b_dec.normal_(0.0, 0.1)
        if tc.W_skip is not None:
            tc.W_skip.normal_(0.0, 0.1)
    return tc.requires_grad_(False)


def save_transcoder_run(run: Path, model_dir: Path, tc: SAE) -> Path:
    """A run folder (sae/ with the metadata a trained transcoder run records) for `tc` reading
    `HOOK_IN` and writing `HOOK_OUT` of the model at `model_dir`."""
    save_sae(tc, run / "sae", extra_metadata={"model": str(model_dir), "hook": HOOK_IN,
                                              "hook_out": HOOK_OUT})
    return run


class ExactMLP(torch.nn.Module):
    """A stand-in transcoder that computes the MLP sublayer itself (codes = the input): the
    block's MLP, and for gemma3 the post-MLP norm between it and hook_mlp_out."""

    def __init__(self, block: torch.nn.Module, family: str, scale: float = 1.0):
        super().__init__()
        # Copies: the edits hook the model's own modules.
        self.mlp = copy.deepcopy(block.mlp)
        self.post = (copy.deepcopy(block.post_feedforward_layernorm) if family == "gemma3"
                     else torch.nn.Identity())
        self.scale = scale
        """Multiplies the output: 1 is a perfect stand-in, anything else a known error."""

    def encode(self, x_ND):
        return x_ND

    def decode(self, f_ND):
        return self.scale * self.post(self.mlp(f_ND))
