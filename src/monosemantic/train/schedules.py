"""Learning-rate and sparsity-coefficient schedules, as pure functions of the step.

Steps are 0-based: step `s` is the (s+1)-th optimizer update. Keeping them pure (no scheduler
object with state) means a resumed run only needs the step number to be back on schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """The Scaling Monosemanticity schedule: lambda warm-up, lr warm-up (optional) and decay."""

    total_steps: int
    """Number of optimizer steps in the run."""
    lr: float
    """Peak learning rate."""
    l1_warmup_fraction: float = 0.05
    """lambda rises linearly from 0 to its full value over this fraction of the steps."""
    lr_warmup_fraction: float = 0.0
    """lr rises linearly from 0 over this fraction of the steps."""
    lr_decay_fraction: float = 0.2
    """lr falls linearly to 0 over this last fraction of the steps."""

    def l1_scale(self, step: int) -> float:
        """Multiplier of the sparsity coefficient at `step`: (step+1)/W during warm-up, then 1."""
        warmup = round(self.l1_warmup_fraction * self.total_steps)
        if warmup <= 0 or step >= warmup:
            return 1.0
        return (step + 1) / warmup

    def lr_at(self, step: int) -> float:
        """Learning rate at `step`.

        Warm-up: lr·(step+1)/W over the first W steps. Decay: over the last D steps the lr
        falls linearly so that the final step uses lr/D and the (virtual) step after it 0.
        """
        warmup = round(self.lr_warmup_fraction * self.total_steps)
        decay = round(self.lr_decay_fraction * self.total_steps)
        factor = 1.0
        if warmup > 0 and step < warmup:
            factor = (step + 1) / warmup
        decay_start = self.total_steps - decay
        if decay > 0 and step >= decay_start:
            factor = min(factor, (self.total_steps - step) / decay)
        return self.lr * factor
