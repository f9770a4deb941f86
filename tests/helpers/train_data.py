"""In-memory training data for trainer tests: synthetic sparse activations, no store needed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import torch


def sparse_activations(n_rows: int = 8192, d: int = 16, n_true: int = 64, active: int = 3,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x = codes @ dictionary: each row mixes `active` of `n_true` random unit directions with
    positive magnitudes. Returns (x_ND, dictionary_TD), scaled so that E||x||^2 = d."""
    gen = torch.Generator().manual_seed(seed)
    dict_TD = torch.randn(n_true, d, generator=gen)
    dict_TD /= dict_TD.norm(dim=1, keepdim=True)
    idx_NA = torch.rand(n_rows, n_true, generator=gen).argsort(dim=1)[:, :active]
    mags_NA = torch.rand(n_rows, active, generator=gen) + 0.5
    codes_NT = torch.zeros(n_rows, n_true).scatter_(1, idx_NA, mags_NA)
    x_ND = codes_NT @ dict_TD
    x_ND *= (d / x_ND.square().sum(dim=1).mean()).sqrt()
    return x_ND, dict_TD


class MemoryData:
    """A `TrainData` over a tensor: the last `holdout_fraction` rows are held out, training
    batches are drawn from a seeded per-epoch permutation and can restart at any step."""

    def __init__(self, x_ND: torch.Tensor, batch_size: int, holdout_fraction: float = 0.1,
                 seed: int = 0):
        self.x_ND = x_ND.float()
        self.batch_size = batch_size
        self.seed = seed
        self.d = x_ND.shape[1]
        self.norm_scale = 1.0
        n_eval = round(x_ND.shape[0] * holdout_fraction)
        self.n_train_rows = x_ND.shape[0] - n_eval

    def train_batches(self, start_step: int) -> Iterator[torch.Tensor]:
        per_epoch = self.n_train_rows // self.batch_size
        for step in itertools.count(start_step):
            epoch, i = divmod(step, per_epoch)
            perm = torch.randperm(self.n_train_rows,
                                  generator=torch.Generator().manual_seed(self.seed + epoch))
            yield self.x_ND[perm[i * self.batch_size:(i + 1) * self.batch_size]]

    def eval_batches(self, max_rows: int) -> Iterator[torch.Tensor]:
        held = self.x_ND[self.n_train_rows:][:max_rows]
        return iter(held.split(self.batch_size))

    def metadata(self) -> dict:
        return {"model": "synthetic", "hook": "none", "store": None,
                "holdout_rows": [self.n_train_rows, self.x_ND.shape[0]],
                "norm_scale": self.norm_scale}


def write_store(path: Path, x_ND: torch.Tensor) -> Path:
    """A float32 activation store at `path` holding the rows of `x_ND` (one document per 64)."""
    from monosemantic.activations.writer import StoreWriter

    n = x_ND.shape[0]
    writer = StoreWriter(path, {"model": "synthetic", "hook": "blocks.0.hook_resid_post"},
                         d=x_ND.shape[1], dtype="float32", shard_rows=1024)
    writer.append(x_ND, torch.zeros(n, dtype=torch.long), torch.arange(n) // 64,
                  torch.arange(n) % 64, batch=0, first_row=0)
    writer.finish()
    return path


def metrics_records(run: Path) -> list[dict]:
    """Every record of RUN/metrics.jsonl, in order (the file must be complete)."""
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
