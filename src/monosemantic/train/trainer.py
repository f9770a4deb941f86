"""`train(cfg)`: the SAE training loop (CLI `monosemantic train`).

The step is the hot loop, so it never waits on the device: metrics, the dead-feature counters and
the NaN watch live in device tensors and are read back only every `log_every` steps, before an
evaluation and before a checkpoint (a checkpoint is never written after a non-finite loss).

Under torchrun (`distributed`) every rank trains the same SAE on its slice of each global batch:
gradients are averaged, the dead-feature counts summed every step (one dead mask for AuxK),
the metric sums gathered on rank 0 when they are read; rank 0 alone writes the run directory,
except the checkpoints, which every rank writes its part of (`train/snapshot.py`).
With `--parallel features` the ranks of a feature group split the dictionary and read the same
batches (`feature_parallel`); the Loop's `ranks` is then the grid's data axis (`mesh`), a group
of one unless `--feature-ranks` leaves several feature groups.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.devices import resolve_device
from monosemantic.distributed import Ranks, process_group
from monosemantic.distributed.collective import agree
from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import RunDir
from monosemantic.sae import SAE
from monosemantic.train.checkpoint import latest_checkpoint, read_meta
from monosemantic.train.config import TrainConfig, resolve, validate
from monosemantic.train.data import (
    FINITE_CHECK_BATCHES,
    TrainData,
    check_finite,
    open_data,
    split_batch,
)
from monosemantic.train.distributed import drop_sums, fold_sums
from monosemantic.train.evaluate import evaluate
from monosemantic.train.feature_parallel import (
    FeatureShard,
    clip_grad_norm_,
    feature_layout,
    save_gathered_sae,
)
from monosemantic.train.logger import MetricsLogger, require_backends
from monosemantic.train.preflight import check_same_options
from monosemantic.train.resume import resume_point
from monosemantic.train.schedules import Schedule
from monosemantic.train.state import TrainState

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["TrainConfig", "train", "NonFiniteLossError"]


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


def train(cfg: TrainConfig, data: TrainData | None = None) -> Path:
    """Train an SAE as `cfg` says and return the run directory (resumes an interrupted run).

    `data` replaces the store / stream named in `cfg` (tests, custom sources).
    """
    validate(cfg)
    require_backends(cfg.wandb_project, cfg.tensorboard)
    with process_group(resolve_device(cfg.device), cfg.dist_timeout) as (ranks, device):
        _train(cfg, data, ranks, device)
    return Path(cfg.out)


def _train(cfg: TrainConfig, data: TrainData | None, ranks: Ranks, device: torch.device) -> None:
    all_ranks = ranks  # rank 0 writes the run directory, all wait for it
    # From here `ranks` is the data-parallel axis (with --parallel features: the grid's column).
    shard, ranks = feature_layout(cfg, all_ranks, custom_data=data is not None)
    if ranks.active:
        if data is not None:
            raise UserError("a custom data source is not split across ranks: train it in one "
                            "process, or pass --store")
        if cfg.batch_size % ranks.world:
            raise UserError(f"--batch-size {cfg.batch_size} does not split evenly over "
                            f"{ranks.world} ranks: use a multiple of {ranks.world}")
    transcoder = cfg.hook_in is not None or cfg.clt_layers is not None
    if transcoder and (all_ranks.active or data is not None):
        raise UserError("transcoders train in one process from a paired store for now: run "
                        "without torchrun (multi-process transcoder training is not implemented)")
    if (cfg.crosscoder or cfg.stores) and all_ranks.active:
        raise UserError("crosscoders train in one process for now: run without torchrun "
                        "(multi-process crosscoder training is not implemented)")
    part = (ranks.rank, ranks.world)
    norm_scale = None
    if data is None and cfg.store is None and not cfg.stores:
        # Streaming: the length comes from the options; a resumed run reuses its scale.
        resolve(cfg, None)
        norm_scale = _checkpoint_norm_scale(cfg.out)
        data = open_data(cfg, device, total_steps=cfg.steps, norm_scale=norm_scale, part=part)
    elif data is None:
        # A store one rank cannot open stops every rank (rank 0 names it), none waits.
        data = agree(all_ranks, lambda: open_data(cfg, device, part=part))
    # Only a transcoder's data (train/paired.py) has a target width.
    resolve(cfg, data.n_train_rows, data.d, getattr(data, "d_out", None),
            getattr(data, "site_widths", ()))
    check_same_options(all_ranks, cfg)
    assert cfg.steps is not None and cfg.lr is not None and cfg.dead_window_tokens is not None
    # Rank 0 checks and writes the run directory; every rank then reads the same checkpoint.
    resume = resume_point(cfg, all_ranks)

    state = TrainState.create(cfg, data.d, device, shard)
    if resume is not None:
        state.load(resume[1], all_ranks)  # this rank's features of any layout's checkpoint
        if not ranks.is_main:
            drop_sums(state)  # rank 0 holds the checkpoint's metric sums
    else:
        batches = data.train_batches(0)
        first_BD, first_target_BD = split_batch(next(batches))
        _close(batches)
        # The whole first global batch on every rank: the same data-dependent init everywhere.
        first_BD = ranks.gather_cat(first_BD.to(device))
        check_finite(first_BD, "training batch 0")
        if first_target_BD is not None:  # a transcoder (one process)
            first_target_BD = first_target_BD.to(device)
            check_finite(first_target_BD, "training batch 0 (target)")
        state.sae.init_from_data(first_BD, first_target_BD)
    Loop(cfg, data, state, device, ranks, all_ranks).run()


def _close(batches: Iterator[Any]) -> None:
    # Stops a store reader's prefetch thread now rather than at garbage collection.
    close = getattr(batches, "close", None)
    if close is not None:
        close()


def _autocast(device: torch.device, choice: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the forward pass's autocast context (bf16 on GPU unless told otherwise)."""
    if choice == "auto":
        choice = "bfloat16" if device.type == "cuda" else "float32"
    if choice == "float32":
        return contextlib.nullcontext
    dtype = getattr(torch, choice)
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _checkpoint_norm_scale(run_dir: Path) -> float | None:
    found = latest_checkpoint(run_dir) if RunDir(run_dir).cfg_path.exists() else None
    if found is None:
        return None
    return float(read_meta(found[1])["norm_scale"])


class Loop:
    """One training run from `state.step` to `cfg.steps`: steps, logs, evals, checkpoints."""

    def __init__(self, cfg: TrainConfig, data: TrainData | None, state: TrainState,
                 device: torch.device, ranks: Ranks | None = None,
                 all_ranks: Ranks | None = None):
        """`data` may be None for a loop that is only driven through `step` (benchmarks);
        `ranks`: this process among the data-parallel ranks (`data` gives its slices). A
        feature-sharded SAE (`state.sae.shard`) brings its own group of ranks; `all_ranks`
        (default `ranks`) are every training process, which write checkpoints together."""
        self.cfg, self.data, self.state, self.device = cfg, data, state, device
        self.ranks = ranks if ranks is not None else Ranks()
        self.all_ranks = all_ranks if all_ranks is not None else self.ranks
        shard = state.sae.shard
        if shard is not None and not isinstance(shard, FeatureShard):
            raise TypeError("a feature-sharded SAE in training needs a FeatureShard")
        self.shard: FeatureShard | None = shard
        self.is_main = self.ranks.is_main and (self.shard is None or self.shard.is_main)
        assert cfg.steps is not None and cfg.lr is not None
        self.schedule = Schedule(cfg.steps, cfg.lr, cfg.l1_warmup_fraction,
                                 cfg.lr_warmup_fraction, cfg.lr_decay_fraction)
        self.autocast = _autocast(device, cfg.autocast)
        self.forward = torch.compile(state.sae) if cfg.compile else state.sae
        self.params = [p for p in state.sae.parameters() if p.requires_grad]
        self.run_dir = Path(cfg.out)
        self.last_good: tuple[int, Path] | None = latest_checkpoint(self.run_dir)
        self.overhead_seconds = 0.0

    def run(self) -> None:
        cfg, state = self.cfg, self.state
        total = cfg.steps
        assert total is not None
        if self.data is None:
            raise ValueError("Loop.run needs the run's data; this loop was built with data=None")
        main = self.is_main
        logger = (MetricsLogger(self.run_dir, cfg.wandb_project, cfg.tensorboard, to_dict(cfg))
                  if main else None)
        bar = progress(total=total, desc="train", unit="step", initial=state.step,
                       disable=not main)
        self.t_log, self.step_log = time.perf_counter(), state.step
        self.t_start, self.wall_before = time.perf_counter(), state.wall_time
        batches = iter(self.data.train_batches(state.step))
        try:
            checked = 0
            while state.step < total:
                batch = next(batches, None)
                if batch is None:
                    raise UserError(f"the data ran out after {state.step} of {total} steps: "
                                    "use a larger corpus or fewer --steps / --total-tokens")
                x_BD, y_BD = split_batch(batch, self.device)
                if checked < FINITE_CHECK_BATCHES:  # a host sync; only the first batches
                    check_finite(x_BD, f"training batch {state.step}")
                    if y_BD is not None:
                        check_finite(y_BD, f"training batch {state.step} (target)")
                    checked += 1
                if y_BD is None:  # an SAE: the one-argument call it always was
                    self.step(x_BD)
                else:
                    self.step(x_BD, y_BD)
                bar.update(1)
                done = state.step
                if done % cfg.log_every == 0 or done == total:
                    self._log_train(logger, bar)
                if (cfg.eval_every and done % cfg.eval_every == 0) or done == total:
                    self._eval(logger)
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == total:
                    self._checkpoint()
            self._check_finite_loss()
            sae_dir = RunDir(self.run_dir).sae_dir
            if self.shard is not None and self.ranks.is_main:  # the first feature group
                save_gathered_sae(state, self.shard, sae_dir, self.data,
                                  self._summary() if main else {})
            elif main:
                state.save_final_sae(sae_dir, self.data, self._summary())
        finally:
            _close(batches)
            bar.close()
            if logger is not None:
                logger.close()

    def step(self, x_BD: torch.Tensor, target_BD: torch.Tensor | None = None) -> None:
        """One optimizer step on the batch `x_BD` (already normalised, on the device); a
        transcoder's `target_BD` are the target site's activations of the same rows.

        Everything `run` does per batch: lr schedule, forward with the sparsity warm-up scale
        (plus the dead mask for AuxK once a feature may be dead), backward, the SAE's decoder-norm
        hooks, gradient clipping, Adam, the dead-feature tracker and the metric sums; no
        logging, evaluation or checkpoint. Advances `state.step`; never syncs a GPU.
        """
        state, cfg = self.state, self.cfg
        step = state.step
        lr = self.schedule.lr_at(step)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        # The mask is fresh every step (one comparison on the device). It is left out while the
        # tracker's host-side bound proves that no feature is dead: AuxK would find nothing.
        dead_mask_F = (state.tracker.dead_mask() if state.sae.needs_dead_mask
                       and state.tracker.may_have_dead() else None)
        group = {"group": self.ranks} if self.ranks.active else {}
        with self.autocast():
            target = {} if target_BD is None else {"target_BD": target_BD}
            out = self.forward(x_BD, dead_mask_F=dead_mask_F,
                               l1_scale=self.schedule.l1_scale(step), **group, **target)
        out.loss.backward()
        self.ranks.average_grads_(self.params)
        state.sae.before_optimizer_step()
        if cfg.grad_clip > 0 and self.shard is not None:
            assert isinstance(state.sae, SAE)  # CLTs are never feature-sharded
            clip_grad_norm_(state.sae, self.shard, cfg.grad_clip)
        elif cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.sae.after_optimizer_step()
        # Per-feature counts straight from the codes: sparse paths never build a dense B×F f.
        # The tracker counts the global batch, so every rank has the same dead mask.
        fires_F = out.fires_F()
        n_active = fires_F.sum()
        if self.shard is not None:  # fires_F is the shard's; L0 counts every feature
            self.shard.sum_(n_active)
        state.tracker.record(self.ranks.sum_(fires_F), x_BD.shape[0] * self.ranks.world)
        state.recon.add(x_BD if target_BD is None else target_BD, out.x_hat_BD.detach(),
                        n_active)
        if self.ranks.active:  # each rank's share of the mean over the ranks
            world = self.ranks.world
            state.losses.add(step, out.loss / world, {k: v / world for k, v in out.losses.items()})
        else:
            state.losses.add(step, out.loss, out.losses)
        state.step = step + 1

    def _checkpoint(self) -> None:
        self._check_finite_loss()
        start = time.perf_counter()
        assert self.data is not None  # only `run` checkpoints
        self.last_good = self.state.save(self.run_dir, self.cfg.keep_checkpoints,
                                         self._wall_time(), self.data.norm_scale, self.all_ranks)
        self.overhead_seconds += time.perf_counter() - start

    def _check_finite_loss(self) -> None:
        # Every read of the sums comes through here, on all ranks at the same steps.
        fold_sums(self.ranks, self.state)
        bad = self.state.losses.bad_step()
        if bad is None:
            return
        if self.last_good is None:
            where = "no checkpoint was written before it"
        else:
            where = f"last good checkpoint: {self.last_good[1]} (step {self.last_good[0]})"
        raise NonFiniteLossError(
            f"the loss became NaN/Inf at step {bad}; training stopped ({where}). Lower --lr, "
            "check the activations, or keep --grad-clip on; the run resumes from that checkpoint")

    def _log_train(self, logger: MetricsLogger | None, bar: tqdm) -> None:
        state = self.state
        self._check_finite_loss()
        now = time.perf_counter()
        # On every rank: a sharded tracker reduces them over the ranks.
        health = (state.tracker.dead_fraction(),
                  state.tracker.dense_fraction(self.cfg.dense_threshold))
        if logger is not None:
            self._write_train_record(logger, bar, now, health)
        state.losses.reset()
        state.recon.reset()
        state.tracker.reset_window()
        state.tracker.refresh_bound()  # the device was just read anyway
        self.t_log, self.step_log, self.overhead_seconds = now, state.step, 0.0

    def _write_train_record(self, logger: MetricsLogger, bar: tqdm, now: float,
                            health: tuple[torch.Tensor, torch.Tensor]) -> None:
        state, cfg = self.state, self.cfg
        seconds = max(now - self.t_log - self.overhead_seconds, 1e-9)
        tokens = (state.step - self.step_log) * cfg.batch_size
        last = state.step - 1
        record: dict[str, Any] = {"split": "train", "step": state.step,
                                  "tokens": state.step * cfg.batch_size}
        record.update(state.losses.result())
        record.update(state.recon.result())
        # Each figure with the tokens it covers: dead over the tracker's window, dense over
        # this logging window.
        record["dead_fraction"] = float(health[0])
        record["dead_window_tokens"] = state.tracker.window_tokens
        record["dense_fraction"] = float(health[1])
        record["dense_window_tokens"] = state.tracker.tokens_in_window
        record["lr"] = self.schedule.lr_at(last)
        record["l1_scale"] = self.schedule.l1_scale(last)
        record["sparsity_coefficient"] = state.sae.sparsity_coefficient() * record["l1_scale"]
        record["tokens_per_s"] = tokens / seconds
        record["elapsed_s"] = self._wall_time()
        logger.log(record)
        bar.set_postfix(loss=f"{record['loss']:.4g}", L0=f"{record['l0']:.1f}",
                        dead=f"{100 * record['dead_fraction']:.1f}%", refresh=False)
        state.last_records["train"] = record

    def _eval(self, logger: MetricsLogger | None) -> None:
        self._check_finite_loss()
        # Rank 0 alone evaluates (on the whole held-out set); with feature shards, its feature
        # group does, together.
        if logger is None and (self.shard is None or not self.ranks.is_main):
            return
        start = time.perf_counter()
        assert self.data is not None  # only `run` evaluates
        result = evaluate(self.state.sae, self.data.eval_batches(self.cfg.eval_max_rows),
                          self.device, self.autocast)
        if result and logger is not None:
            record = {"split": "eval", "step": self.state.step,
                      "tokens": self.state.step * self.cfg.batch_size, **result}
            logger.log(record)
            self.state.last_records["eval"] = record
        self.overhead_seconds += time.perf_counter() - start

    def _wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.t_start

    def _summary(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "steps": self.state.step,
            "tokens": self.state.step * cfg.batch_size,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "wall_time_s": self._wall_time(),
            "final_train": _strip(self.state.last_records.get("train", {})),
            "final_eval": _strip(self.state.last_records.get("eval", {})),
        }


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "split" and not (
        isinstance(v, float) and not math.isfinite(v))}
