"""EleutherAI sparsify's training step, timed by the shared harness. Runs in .venvs/sparsify.

sparsify's `Trainer` only trains from a language model's forward hooks, so its per-batch work
is reproduced here in the order `Trainer.fit` does it (eai-sparsify 1.3.x, `loss_fn="fvu"`,
one hook point, no gradient accumulation):
  1. `set_decoder_norm_to_unit_norm()` before the forward (the hook does it every step);
  2. dead mask from `num_tokens_since_fired` (only when `auxk_alpha > 0`);
  3. `SparseCoder.forward(x, y=x, dead_mask, total_variance)`, marking fired latents, reading
     the FVU back to the host for its running average;
  4. loss = fvu + auxk_alpha·auxk_loss (+ multi_topk_fvu/8, off) → backward;
  5. `remove_gradient_parallel_to_decoder_directions()`, optimizer step, zero_grad, lr
     scheduler step, dead-feature counters updated.
`b_dec` starts at the first batch's mean, as the trainer does on its first step.

The optimizer is `spec.variant`: `adam` (torch Adam, lr 2e-4/sqrt(F/2^14) with sparsify's linear
warm-up schedule; the same optimizer as the other libraries) or `signum` (sparsify's default:
schedule-free SignSGD, momentum 0.95). auxk_alpha is 1/32 (Gao et al.; sparsify's default is
0, which skips the dead mask).
"""

from __future__ import annotations

import harness
import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig, __version__
from sparsify.sign_sgd import SignSGD
from transformers import get_linear_schedule_with_warmup

AUXK_ALPHA = 1 / 32
DEAD_FEATURE_THRESHOLD = 10_000_000  # sparsify's TrainConfig default (tokens)
LR_WARMUP_STEPS = 1000  # sparsify's TrainConfig default (adam only)


def _optimizer(sae: SparseCoder, variant: str, total_steps: int):
    scale = (sae.num_latents / 2**14) ** 0.5
    if variant in ("", "adam"):
        adam = torch.optim.Adam(sae.parameters(), lr=2e-4 / scale)
        return adam, get_linear_schedule_with_warmup(adam, LR_WARMUP_STEPS, total_steps)
    if variant == "signum":
        opt = ScheduleFreeWrapper(SignSGD(sae.parameters(), lr=5e-3 / scale), momentum=0.95)
        opt.train()
        return opt, None
    raise ValueError(f"sparsify step: unknown optimizer variant {variant!r} (adam, signum)")


class SparsifyStep:
    """One `Trainer.fit` batch of sparsify (see the module docstring)."""

    def __init__(self, spec: harness.Spec, sample_BD: torch.Tensor):
        if spec.arch != "topk":
            raise ValueError(f"sparsify trains TopK sparse coders only, not {spec.arch!r}")
        self.sae = SparseCoder(spec.d_in, SparseCoderConfig(num_latents=spec.n_features, k=spec.k),
                               device="cpu", dtype=torch.float32)
        self.sae.b_dec.data = sample_BD.mean(0)
        self.optimizer, self.scheduler = _optimizer(self.sae, spec.variant,
                                                    spec.warmup + spec.steps)
        self.tokens_since_fired_F = torch.zeros(self.sae.num_latents, dtype=torch.long)
        self.did_fire_F = torch.zeros(self.sae.num_latents, dtype=torch.bool)
        self.fvu_sum = 0.0

    def __call__(self, x_BD: torch.Tensor) -> None:
        sae = self.sae
        sae.set_decoder_norm_to_unit_norm()
        dead_mask_F = (self.tokens_since_fired_F > DEAD_FEATURE_THRESHOLD
                       if AUXK_ALPHA > 0 else None)
        total_variance = (x_BD - x_BD.mean(0)).pow(2).sum()
        out = sae(x=x_BD, y=x_BD, dead_mask=dead_mask_F, total_variance=total_variance)
        self.did_fire_F[out.latent_indices.flatten()] = True
        self.fvu_sum += float(out.fvu.detach())  # the trainer's running average: a host read
        loss = out.fvu + AUXK_ALPHA * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.scheduler is not None:
            self.scheduler.step()
        with torch.no_grad():
            self.tokens_since_fired_F.add_(x_BD.shape[0])
            self.tokens_since_fired_F[self.did_fire_F] = 0
            self.did_fire_F.zero_()


if __name__ == "__main__":
    harness.main("sparsify", __version__, SparsifyStep)
