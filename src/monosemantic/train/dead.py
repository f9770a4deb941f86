"""Dead and dense feature tracking, kept on the device so the hot loop never syncs.

Dead: a feature that did not fire in the last `window_tokens` tokens. Each feature carries a
counter of tokens seen since it last fired; a batch adds its size to every counter and resets the
counters of the features that fired in it. Dense: a feature whose firing rate over the current
logging window exceeds `dense_threshold`.

The host also keeps an upper bound on the largest counter (grown by every batch's size, reset
to the true maximum whenever the trainer reads the device anyway) so that the trainer can skip
the dead mask while no feature can be dead, without reading the counters every step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from monosemantic.sae.sharded import FeatureGroup


class FeatureTracker:
    """Per-feature firing statistics for the dead mask (fed to the SAE) and the dense fraction."""

    def __init__(self, n_features: int, window_tokens: int, device: torch.device | str):
        self.window_tokens = int(window_tokens)
        # int64: counters reach the run length, which can exceed 2^31 tokens.
        self.tokens_since_fire_F = torch.zeros(n_features, dtype=torch.int64, device=device)
        self.fires_in_window_F = torch.zeros(n_features, dtype=torch.int64, device=device)
        self.tokens_in_window = 0
        self.max_silence_bound = 0
        """Upper bound on `tokens_since_fire_F.max()` known on the host (no device read)."""

    def update(self, f_BF: Tensor) -> Tensor:
        """Record a batch of feature activations; returns the per-feature fire counts [F]."""
        return self.record(torch.count_nonzero(f_BF, dim=0), f_BF.shape[0])

    def record(self, fires_F: Tensor, n_tokens: int) -> Tensor:
        """Like `update`, from per-feature fire counts of a batch of `n_tokens` (sparse codes)."""
        self.tokens_since_fire_F.add_(n_tokens).masked_fill_(fires_F > 0, 0)
        self.fires_in_window_F.add_(fires_F)
        self.tokens_in_window += n_tokens
        self.max_silence_bound += n_tokens
        return fires_F

    def may_have_dead(self) -> bool:
        """Whether a feature may be dead; False proves none is (host only, no device read)."""
        return self.max_silence_bound >= self.window_tokens

    def refresh_bound(self) -> None:
        """Tighten `max_silence_bound` to the counters' true maximum (one device read)."""
        self.max_silence_bound = int(self.tokens_since_fire_F.max()) \
            if self.tokens_since_fire_F.numel() else 0

    def dead_mask(self) -> Tensor:
        """Bool [F]: features silent for at least `window_tokens` tokens (no host sync)."""
        return self.tokens_since_fire_F >= self.window_tokens

    def dead_fraction(self) -> Tensor:
        """0-d tensor: fraction of dead features."""
        return self.dead_mask().float().mean()

    def dense_fraction(self, threshold: float) -> Tensor:
        """0-d tensor: fraction of features firing on more than `threshold` of the window."""
        if self.tokens_in_window == 0:
            return torch.zeros((), device=self.fires_in_window_F.device)
        rate_F = self.fires_in_window_F.float() / self.tokens_in_window
        return (rate_F > threshold).float().mean()

    def reset_window(self) -> None:
        """Start a new logging window for the dense statistics."""
        self.fires_in_window_F.zero_()
        self.tokens_in_window = 0

    def state_dict(self) -> dict:
        return {
            "window_tokens": self.window_tokens,
            "tokens_since_fire_F": self.tokens_since_fire_F.cpu(),
            "fires_in_window_F": self.fires_in_window_F.cpu(),
            "tokens_in_window": self.tokens_in_window,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["tokens_since_fire_F"].shape != self.tokens_since_fire_F.shape:
            raise ValueError("checkpoint feature counters have a different number of features")
        self.window_tokens = int(state["window_tokens"])
        self.tokens_since_fire_F.copy_(state["tokens_since_fire_F"])
        self.fires_in_window_F.copy_(state["fires_in_window_F"])
        self.tokens_in_window = int(state["tokens_in_window"])
        self.refresh_bound()


class ShardedTracker(FeatureTracker):
    """A `FeatureTracker` of one feature shard's slice [lo, hi): its dead mask is the slice's;
    the fractions and the host-side bound are the whole dictionary's, so every shard reads the
    same (each is a collective: call them on every shard at the same point)."""

    def __init__(self, group: FeatureGroup, window_tokens: int, device: torch.device | str):
        super().__init__(group.hi - group.lo, window_tokens, device)
        self.group = group

    def refresh_bound(self) -> None:
        local = self.tokens_since_fire_F.max() if self.tokens_since_fire_F.numel() else \
            torch.zeros((), dtype=torch.int64, device=self.tokens_since_fire_F.device)
        # The largest over all shards: every shard then passes a dead mask to AuxK, or none.
        self.max_silence_bound = int(self.group.max_(local.clone()))

    def dead_fraction(self) -> Tensor:
        dead = self.group.sum_(self.dead_mask().sum())
        return dead.float() / self.group.n_features

    def dense_fraction(self, threshold: float) -> Tensor:
        if self.tokens_in_window == 0:
            return torch.zeros((), device=self.fires_in_window_F.device)
        rate_F = self.fires_in_window_F.float() / self.tokens_in_window
        dense = self.group.sum_((rate_F > threshold).sum())
        return dense.float() / self.group.n_features
