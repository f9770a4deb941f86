"""The held-out tokens every size of a series is measured on, and encoding them.

Every run holds out a range of its store's rows from training. The findings use rows held out
by *all* runs of a series (the intersection of their ranges), the first `n_tokens` of them in
corpus order, so every statistic of every size is taken over the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.sae import SAE
    from monosemantic.sae.kernels import SparseCodes


@dataclass
class HoldoutOptions:
    """Which held-out tokens are measured, and how."""

    n_tokens: int = 50_000
    """Held-out tokens measured: the first N rows (corpus order) of the rows every run of the
    series held out from training, the same rows for every size; all of them when there are
    fewer (the number used is reported)."""
    store: Path | None = None
    """Activation store the runs were trained on, when it has moved (default: the one their
    SAEs recorded)."""
    batch_rows: int = 1024
    """Store rows encoded per batch."""
    device: str = "auto"
    """Torch device the SAEs encode on: auto (cuda if available, else cpu), cpu, cuda,
    cuda:1. The correlation sums are kept on the CPU."""


@dataclass
class Holdout:
    """The tokens measured: store rows `rows` of `store`."""

    store: ActivationStore
    rows: range
    requested: int
    """The `n_tokens` asked for (`len(rows)` is what was available)."""

    @property
    def n_tokens(self) -> int:
        return len(self.rows)

    def describe(self) -> dict[str, object]:
        """What the JSON outputs record of the tokens."""
        return {"store": str(self.store.path), "rows": [self.rows.start, self.rows.stop],
                "n_tokens": self.n_tokens, "requested_tokens": self.requested}


def common_holdout(runs: list[RunDir], opts: HoldoutOptions) -> Holdout:
    """The first `opts.n_tokens` rows held out by every run, in the store they share."""
    if opts.n_tokens <= 0:
        raise UserError(f"--n-tokens must be positive, not {opts.n_tokens}")
    first = runs[0]
    store = first.store(opts.store, alternative="give the store with --store")
    lo, hi = 0, store.n_rows
    for run in runs:
        if opts.store is None and run.store_path != first.store_path:
            raise UserError(f"run {run.name} was trained on the store {run.store_path} but run "
                            f"{first.name} on {first.store_path}: the sizes must be measured "
                            "on the same tokens (one store per sweep)")
        run.store(opts.store)  # the hook, width and held-out rows fit this store
        rows = run.holdout_rows
        if rows is None:
            raise UserError(f"run {run.name} has no held-out rows (streamed training): the "
                            "findings need tokens no size trained on")
        lo, hi = max(lo, rows.start), min(hi, rows.stop)
    if hi <= lo:
        raise UserError(f"the runs {', '.join(r.name for r in runs)} hold out no rows in "
                        "common: train them with the same --holdout-fraction on one store")
    return Holdout(store, range(lo, min(hi, lo + opts.n_tokens)), opts.n_tokens)


def encoded_batches(saes: list[SAE], holdout: Holdout, opts: HoldoutOptions,
                    desc: str) -> Iterator[list[SparseCodes]]:
    """Per batch of held-out rows, the sparse codes of every SAE (raw activations, as saved
    SAEs read them)."""
    if opts.batch_rows <= 0:
        raise UserError(f"--batch-rows must be positive, not {opts.batch_rows}")
    device = resolve_device(opts.device)
    bar = progress(total=holdout.n_tokens, desc=desc, unit="tok")
    with torch.no_grad(), bar:
        for x_ND in holdout.store.iter_batches(opts.batch_rows, shuffle=False,
                                               rows=holdout.rows):
            x_ND = x_ND.to(device)
            yield [sae.encode_sparse(x_ND) for sae in saes]
            bar.update(x_ND.shape[0])


def fire_counts(sae: SAE, holdout: Holdout, opts: HoldoutOptions, desc: str) -> np.ndarray:
    """Per feature, the held-out tokens it fires on (code > 0), int64 [F]."""
    counts_F = torch.zeros(sae.cfg.n_features, dtype=torch.int64, device=sae.W_dec_FD.device)
    for (codes,) in encoded_batches([sae], holdout, opts, desc):
        counts_F += codes.fires_F()
    return counts_F.cpu().numpy()
