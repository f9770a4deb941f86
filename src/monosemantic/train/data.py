"""Where training batches come from: an activation store, or activations streamed from a model.

Both sources yield *normalized* float32 `[B, D]` batches (E||x||^2 = d), one per optimizer step,
(a transcoder's paired stores, `train/paired.py`, yield (input, target) pairs of them),
and can restart at any step (the checkpoint's reader position), so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.train.config import TrainConfig

FINITE_CHECK_BATCHES = 4
"""Training batches checked for NaN/Inf at (re)start; later batches are not (a host sync each)."""


Batch = tuple[Tensor, Tensor]
"""A transcoder's (input, target) training batch."""


class TrainData(Protocol):
    # Read-only here (properties), so a source may declare a narrower type (StreamData's None).
    @property
    def d(self) -> int: ...

    @property
    def norm_scale(self) -> float: ...

    @property
    def n_train_rows(self) -> int | None: ...

    # An SAE's source yields input tensors; a transcoder's, (input, target) pairs.
    def train_batches(self, start_step: int) -> Iterator[Tensor] | Iterator[Batch]: ...

    def eval_batches(self, max_rows: int) -> Iterator[Tensor] | Iterator[Batch]: ...

    def metadata(self) -> dict[str, Any]: ...


def split_batch(batch: Tensor | tuple[Tensor, Tensor], device: torch.device | None = None
                ) -> tuple[Tensor, Tensor | None]:
    """(input, target or None) of a training batch: a tensor (an SAE's), or a transcoder's
    (input, target) pair; moved to `device` when given."""
    x_BD, y_BD = (batch, None) if isinstance(batch, Tensor) else batch
    if device is not None:
        x_BD = x_BD.to(device, non_blocking=True)
        y_BD = None if y_BD is None else y_BD.to(device, non_blocking=True)
    return x_BD, y_BD


def check_finite(x_BD: Tensor, where: str) -> None:
    """Fail with a message naming the batch when activations hold NaN or Inf."""
    if not bool(torch.isfinite(x_BD).all()):
        bad = int((~torch.isfinite(x_BD)).any(dim=1).sum())
        raise UserError(
            f"activations contain NaN/Inf ({bad} of {x_BD.shape[0]} rows in {where}): the store "
            "is corrupt or overflowed its dtype; re-harvest it (e.g. with --dtype float32 or "
            "bfloat16), or check the model's outputs at that hook")


def epoch_seed(seed: int, epoch: int) -> int:
    """Shuffle seed of an epoch: the run's seed for the first pass, derived ones after."""
    return seed if epoch == 0 else (seed + 1_000_003 * epoch) % 2**31


class StoreData:
    """Batches from an `ActivationStore`: rows [0, n_train) shuffled for training, the last
    `holdout_fraction` of rows (corpus order) for evaluation.

    `part` = (rank, world): training batches are this rank's slice of each global batch of
    `cfg.batch_size` rows (`ActivationStore.iter_batches`); evaluation batches are whole."""

    def __init__(self, cfg: TrainConfig, part: tuple[int, int] = (0, 1),
                 path: Path | None = None):
        """`path`: the store to read (default `cfg.store`)."""
        from monosemantic.activations import ActivationStore

        path = cfg.store if path is None else path
        assert path is not None
        if not Path(path).exists():
            raise UserError(f"--store {path} does not exist: run `monosemantic harvest` "
                            "first or fix the path")
        self.path = Path(path)
        self.store = ActivationStore(self.path)
        self.batch_size = cfg.batch_size
        self.part = part
        self.seed = cfg.seed
        self.d = int(self.store.d)
        self.norm_scale = float(self.store.norm_scale)
        n_rows = int(self.store.n_rows)
        n_eval = round(n_rows * cfg.holdout_fraction)
        self.n_train_rows = n_rows - n_eval
        self.eval_rows = range(self.n_train_rows, n_rows)
        if self.n_train_rows < self.batch_size:
            raise UserError(
                f"store {self.path} has {self.n_train_rows} training rows (after holding out "
                f"{n_eval}), fewer than one batch of {self.batch_size}: lower --batch-size or "
                "--holdout-fraction, or harvest more tokens")

    def train_batches(self, start_step: int) -> Iterator[Tensor]:
        per_epoch = self.n_train_rows // self.batch_size
        epoch, start = divmod(start_step, per_epoch)
        for ep in itertools.count(epoch):
            yield from self.store.iter_batches(
                self.batch_size, shuffle=True, seed=epoch_seed(self.seed, ep),
                start_batch=start if ep == epoch else 0, normalize=True,
                rows=range(0, self.n_train_rows), part=self.part)

    def eval_batches(self, max_rows: int) -> Iterator[Tensor]:
        start = self.eval_rows.start
        rows = range(start, min(self.eval_rows.stop, start + max_rows))
        if len(rows) == 0:
            return iter(())
        return self.store.iter_batches(self.batch_size, shuffle=False, normalize=True, rows=rows)

    def metadata(self) -> dict[str, Any]:
        return {
            "model": self.store.model,
            "hook": self.store.hook,
            "store": str(self.path.resolve()),
            "holdout_rows": [self.eval_rows.start, self.eval_rows.stop],
            "train_rows": [0, self.n_train_rows],
            "norm_scale": self.norm_scale,
        }


class StreamData:
    """Batches computed on the fly by the model (no disk).

    The first batches streamed are held out for evaluation (kept in memory); the normalization
    scale is estimated on the next `norm_estimate_batches`, which are also the first training
    batches. The stream is deterministic, so a resumed run re-runs the model over the batches
    it already trained on and skips them (correct, at the cost of that compute).

    `part` = (rank, world) of data-parallel training: each rank streams the documents of its
    own part of the corpus (`data.documents_part`: doc_id % world = rank) through its own
    mixing buffer, and its batches of `cfg.batch_size / world` rows are its slice of each
    global batch. Rank 0 alone holds out rows (it alone evaluates), as many as one process
    would; the scale is estimated on the first training rows of all ranks together (the rows
    of `norm_estimate_batches` global batches). Another split of the documents, so not the
    rows of the 1-process stream.
    """

    def __init__(self, cfg: TrainConfig, total_steps: int, device: torch.device,
                 norm_scale: float | None = None, part: tuple[int, int] = (0, 1)):
        from monosemantic.models import load_model

        self.cfg, self.part = cfg, part
        self.batch_size = cfg.batch_size // part[1]
        self.n_train_rows = None
        self.lm = load_model(str(cfg.model), device=str(device),
                             dtype=getattr(torch, cfg.model_dtype))
        self.d = int(self.lm.hook_point(str(cfg.hook)).width)
        eval_rows = min(cfg.eval_max_rows, cfg.holdout_fraction * total_steps * cfg.batch_size)
        self.n_eval_batches = math.ceil(eval_rows / self.batch_size) if part[0] == 0 else 0
        stream = self._open()
        self._eval_raw = list(itertools.islice(stream, self.n_eval_batches))
        # Raw training batches read ahead (the scale estimate); the live stream continues after.
        self._head = list(itertools.islice(stream, cfg.norm_estimate_batches))
        self._live: Iterator[Tensor] | None = stream
        self._live_step = len(self._head)
        short = len(self._eval_raw) < self.n_eval_batches or not self._head
        for i, x_BD in enumerate(self._head):
            check_finite(x_BD, f"streamed training batch {i}")
        self.norm_scale = self._shared_scale(norm_scale, short, device)

    def _shared_scale(self, norm_scale: float | None, short: bool, device: torch.device
                      ) -> float:
        """`norm_scale` if given, else the scale of the head batches of every rank; raises on
        every rank when the corpus ran out on any (so no rank waits for another)."""
        from monosemantic.activations import norm_scale_of
        from monosemantic.distributed import Ranks

        head_ND = torch.cat(self._head) if self._head else torch.zeros(0, self.d)
        # float64 sums: sum of squared norms, rows, ranks whose corpus ran out.
        sums = torch.tensor([float(head_ND.double().square().sum()), len(head_ND), short],
                            dtype=torch.float64, device=device)
        total_sq, rows, n_short = Ranks(*self.part).sum_(sums).tolist()
        if n_short:
            where = f" (on {int(n_short)} of {self.part[1]} ranks)" if self.part[1] > 1 else ""
            raise UserError(f"the corpus ran out{where} before the held-out and first training "
                            "batches; use a larger corpus or a smaller --batch-size")
        if norm_scale is not None:
            return norm_scale
        if self.part[1] == 1:
            return norm_scale_of(head_ND)
        # `norm_scale_of` over the rows of all ranks.
        return (self.d * rows / total_sq) ** 0.5 if total_sq > 0 else 1.0

    def _open(self) -> Iterator[Tensor]:
        from monosemantic.activations import stream_activations

        return iter(stream_activations(
            self.lm, self.cfg.corpus, str(self.cfg.hook), self.batch_size,
            ctx_len=self.cfg.ctx_len, model_batch_size=self.cfg.stream_batch_size,
            buffer_rows=self.cfg.stream_buffer_rows, seed=self.cfg.seed, part=self.part))

    def train_batches(self, start_step: int) -> Iterator[Tensor]:
        step = start_step
        while step < len(self._head):
            yield self._head[step] * self.norm_scale
            step += 1
        if self._live is None or self._live_step != step:
            # Another iterator moved the live stream: reopen it and skip to `step`.
            self._live = self._open()
            skipped = itertools.islice(self._live, self.n_eval_batches + step)
            for _ in skipped:
                pass
            self._live_step = step
        for x_BD in self._live:
            self._live_step += 1
            yield x_BD * self.norm_scale

    def eval_batches(self, max_rows: int) -> Iterator[Tensor]:
        n = math.ceil(max_rows / self.batch_size)
        return (x_BD * self.norm_scale for x_BD in self._eval_raw[:n])

    def metadata(self) -> dict[str, Any]:
        from monosemantic.config import to_dict

        return {
            "model": self.cfg.model,
            "hook": self.cfg.hook,
            "store": None,
            "corpus": self.cfg.corpus.describe(),
            "corpus_config": to_dict(self.cfg.corpus),
            "holdout_rows": None,
            "holdout_stream_batches": [0, self.n_eval_batches],
            # Held-out batches are rank 0's, of batch_size / stream_ranks rows each.
            "stream_ranks": self.part[1],
            "norm_scale": self.norm_scale,
        }


def open_data(cfg: TrainConfig, device: torch.device, total_steps: int | None = None,
              norm_scale: float | None = None, part: tuple[int, int] = (0, 1)) -> TrainData:
    """The data source `cfg` asks for (`total_steps` and `norm_scale` matter for streaming;
    `part` = (rank, world) of data-parallel training: this rank's slice of every batch)."""
    if cfg.crosscoder or cfg.stores:
        from monosemantic.train.sites import SiteData

        return SiteData(cfg, part)
    if cfg.store is not None and cfg.clt_layers is not None:
        from monosemantic.train.clt_data import CLTStoreData

        return CLTStoreData(cfg, part)
    if cfg.store is not None and cfg.hook_in is not None:
        from monosemantic.train.paired import PairedStoreData

        return PairedStoreData(cfg, part)
    if cfg.store is not None:
        return StoreData(cfg, part)
    if total_steps is None:
        raise UserError("streaming needs a length: give --steps or --total-tokens")
    return StreamData(cfg, total_steps, device, norm_scale, part)
