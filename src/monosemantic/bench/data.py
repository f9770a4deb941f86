"""`SyntheticTrainData`: the trainer's `TrainData` over tokens of a `SyntheticFeatures`.

Rows [0, n_train) are the training pool, held in memory (n_train·d floats; drawn chunk by chunk)
and passed over in a seeded shuffled order per epoch; rows [n_train, n_train + n_eval) are held
out, drawn again when asked for (the generator is deterministic), for the trainer's evaluation
and the recovery scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch

from monosemantic.activations.stream import norm_scale_of
from monosemantic.bench.synthetic import SyntheticFeatures
from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.sae.kernels import SparseCodes
from monosemantic.train.data import epoch_seed


class SyntheticTrainData:
    """Normalised (E‖s·x‖² = d) training and held-out batches of synthetic tokens."""

    def __init__(self, features: SyntheticFeatures, n_train: int, n_eval: int,
                 batch_size: int, seed: int = 0):
        if n_train < batch_size:
            raise UserError(f"--n-tokens {n_train} is fewer than one batch of {batch_size}: "
                            "raise --n-tokens or lower --batch-size")
        self.features = features
        self.batch_size = batch_size
        self.seed = seed
        self.d = features.cfg.d
        self.n_train_rows = n_train
        self.n_eval = n_eval
        self.x_ND = torch.cat([x for x, _ in features.chunks(n_train)])
        self.norm_scale = norm_scale_of(self.x_ND)

    def train_batches(self, start_step: int) -> Iterator[torch.Tensor]:
        per_epoch = self.n_train_rows // self.batch_size
        epoch, i = divmod(start_step, per_epoch)
        for ep in itertools.count(epoch):
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, ep))
            order = torch.randperm(self.n_train_rows, generator=gen)
            for j in range(i if ep == epoch else 0, per_epoch):
                rows = order[j * self.batch_size:(j + 1) * self.batch_size]
                yield self.x_ND[rows] * self.norm_scale

    def eval_batches(self, max_rows: int) -> Iterator[torch.Tensor]:
        n = min(max_rows, self.n_eval)
        for x_BD, _ in self.features.chunks(n, self.batch_size, start=self.n_train_rows):
            yield x_BD * self.norm_scale

    def held_out(self, chunk_rows: int = 16384) -> Iterator[tuple[torch.Tensor, SparseCodes]]:
        """Raw (unnormalised) held-out tokens with their true activations, chunk by chunk."""
        return self.features.chunks(self.n_eval, chunk_rows, start=self.n_train_rows)

    def metadata(self) -> dict[str, Any]:
        return {"model": "synthetic", "hook": "synthetic", "store": None,
                "synthetic": to_dict(self.features.cfg),
                "holdout_rows": [self.n_train_rows, self.n_train_rows + self.n_eval],
                "norm_scale": self.norm_scale}
