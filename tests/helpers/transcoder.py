"""A small random transcoder (hook_mlp_in -> hook_mlp_out) and a run folder holding it, for the
steering / attribution / inspection tests: no harvest or training needed."""

from __future__ import annotations

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
