"""Distributed training on CPU (gloo): steps/s and the share of the step spent communicating.

    .venv/bin/python benchmarks/distributed_train.py                    # 1, 2, 4 ranks, demo store
    .venv/bin/python benchmarks/distributed_train.py --store runs/acts  # another store (read only)
    .venv/bin/python benchmarks/distributed_train.py --ranks 1 2 --batch-size 256 \\
        --n-features 256 --steps 3 --warmup 1                           # smoke
    .venv/bin/python benchmarks/distributed_train.py --parallel features   # sharded dictionary

For each world size N, one torchrun launch of N processes (this file with --worker) trains the
same SAE on the same activation store with the same global batch, each rank on its 1/N slice
(`--parallel features`: each rank on the whole batch with its F/N features), through the
trainer's own `Loop.step` (forward, backward, gradient all-reduce, clipping, Adam, dead-feature
counts). Each rank times every step and the collectives inside it: the functions
of `torch.distributed` are wrapped with a clock, and gloo's blocking collectives return only
when done, so the clock is the wall time in communication, including waiting for a slower rank.
Data reading is timed apart and is not in the step. Figures are medians over the steps after
`--warmup`; steps/s is from the slowest rank's median step.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from monosemantic.config import add_dataclass_arguments, dataclass_from_namespace
from monosemantic.distributed import process_group
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig
from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.data import open_data
from monosemantic.train.feature_parallel import feature_layout
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop

REPO = Path(__file__).resolve().parent.parent
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object",
               "reduce_scatter", "reduce_scatter_tensor", "all_to_all_single", "broadcast",
               "barrier")
"""The `torch.distributed` functions whose time counts as communication."""


@dataclass
class DistTrainBenchConfig:
    """Steps/s and communication share of distributed training with 1, 2, 4 gloo ranks."""

    store: Path = Path("runs/demo/acts")
    """Activation store to train on (only read); relative paths are from the repository root.
    Default: the demo's store."""
    ranks: list[int] = field(default_factory=lambda: [1, 2, 4])
    """World sizes to measure; the global batch must divide by each."""
    batch_size: int = 4096
    """Global batch (tokens per optimizer step, over all ranks), the same for every N."""
    architecture: str = "topk"
    """SAE architecture."""
    n_features: int = 4096
    """Dictionary size F."""
    k: int = 32
    """Active features per token (topk, batchtopk)."""
    steps: int = 20
    """Timed optimizer steps."""
    warmup: int = 3
    """Untimed steps before them."""
    threads: int = 1
    """torch threads per rank (N ranks use N x threads cores: keep that at most the idle cores)."""
    seed: int = 0
    """Seed of the SAE's initialisation and the data order."""
    parallel: str = "data"
    """data: every rank holds the SAE and 1/N of each batch; features: every rank holds F/N
    features and reads the whole batch (`monosemantic train --parallel features`)."""
    json_out: Path | None = None
    """Also write every rank's per-step times to this JSON file."""


# ---- the worker: one rank ----

class CommClock:
    """Seconds spent inside `torch.distributed` collectives since the last `take`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def install(self) -> None:
        for name in COLLECTIVES:
            original = getattr(dist, name, None)
            if original is not None:
                setattr(dist, name, self._timed(original))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def run_worker(spec: dict[str, Any]) -> None:
    """Train `warmup + steps` steps as this rank and write its times to spec["out_dir"]."""
    torch.set_num_threads(spec["threads"])
    clock = CommClock()
    clock.install()
    with tempfile.TemporaryDirectory(prefix="monosemantic-dist-bench-") as run_dir, \
            process_group(torch.device("cpu")) as (ranks, device):
        sae = SAEConfig(architecture=spec["architecture"], n_features=spec["n_features"],
                        k=spec["k"])
        cfg = TrainConfig(out=Path(run_dir), store=Path(spec["store"]), sae=sae,
                          batch_size=spec["batch_size"], steps=spec["warmup"] + spec["steps"],
                          seed=spec["seed"], device="cpu", parallel=spec["parallel"])
        # As `train()` does: the feature shard (if any) and the data axis of this rank.
        shard, data_ranks = feature_layout(cfg, ranks)
        data = open_data(cfg, device, part=(data_ranks.rank, data_ranks.world))
        resolve(cfg, data.n_train_rows, data.d)
        state = TrainState.create(cfg, data.d, device, shard)
        batches = data.train_batches(0)
        state.sae.init_from_data(data_ranks.gather_cat(next(batches)))
        # Drives `step` only: no logs, evals or checkpoints.
        loop = Loop(cfg, None, state, device, data_ranks, ranks)
        step_s, comm_s, data_s = [], [], []
        for _ in range(spec["warmup"] + spec["steps"]):
            start = time.perf_counter()
            x_BD = next(batches)
            data_s.append(time.perf_counter() - start)
            clock.take()
            start = time.perf_counter()
            loop.step(x_BD)
            step_s.append(time.perf_counter() - start)
            comm_s.append(clock.take())
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        result = {"rank": ranks.rank, "world": ranks.world, "rows_per_rank": x_BD.shape[0],
                  "step_s": step_s, "comm_s": comm_s, "data_s": data_s,
                  "torch_threads": torch.get_num_threads()}
        Path(spec["out_dir"], f"rank{ranks.rank}.json").write_text(json.dumps(result))


# ---- the launcher ----

def launch(cfg: DistTrainBenchConfig, world: int, out_dir: Path) -> list[dict[str, Any]]:
    """Run the workers of one world size and return their results in rank order."""
    spec = {**{k: v for k, v in asdict(cfg).items() if k not in ("ranks", "json_out")},
            "store": str(store_path(cfg)), "out_dir": str(out_dir)}
    worker = [str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    launcher = ([] if world == 1 else
                ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world)])
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MONOSEMANTIC_QUIET": "1"}
    proc = subprocess.run([sys.executable, *launcher, *worker], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise UserError(f"{world} rank(s) failed (exit {proc.returncode}):\n{tail}")
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


def summarize(cfg: DistTrainBenchConfig, world: int,
              ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the ranks' per-step times (the warm-up steps dropped)."""
    timed = slice(cfg.warmup, None)
    step_med = [statistics.median(r["step_s"][timed]) for r in ranks]
    comm_med = [statistics.median(r["comm_s"][timed]) for r in ranks]
    shares = [statistics.median(c / s for c, s in zip(r["comm_s"][timed], r["step_s"][timed]))
              for r in ranks]
    step_s = max(step_med)
    return {"ranks": world, "rows_per_rank": ranks[0]["rows_per_rank"],
            "steps_per_s": 1.0 / step_s, "tokens_per_s": cfg.batch_size / step_s,
            "step_ms": 1000 * step_s, "comm_ms": 1000 * max(comm_med),
            "comm_share": statistics.mean(shares), "comm_share_min": min(shares),
            "comm_share_max": max(shares),
            "data_ms": 1000 * max(statistics.median(r["data_s"][timed]) for r in ranks)}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    base = next((row["steps_per_s"] for row in rows if row["ranks"] == 1), None)
    lines = ["| ranks | rows/rank | steps/s | tokens/s | speed-up vs 1 | step ms | comm ms "
             "| comm share (mean, min–max over ranks) | data ms (not in step) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        speedup = "—" if base is None else f"{row['steps_per_s'] / base:.2f}×"
        lines.append(
            f"| {row['ranks']} | {row['rows_per_rank']:,} | {row['steps_per_s']:.2f} "
            f"| {row['tokens_per_s']:,.0f} | {speedup} | {row['step_ms']:.1f} "
            f"| {row['comm_ms']:.1f} | {100 * row['comm_share']:.0f}% "
            f"({100 * row['comm_share_min']:.0f}–{100 * row['comm_share_max']:.0f}%) "
            f"| {row['data_ms']:.1f} |")
    return "\n".join(lines)


def store_path(cfg: DistTrainBenchConfig) -> Path:
    return cfg.store if cfg.store.is_absolute() else REPO / cfg.store


def _validate(cfg: DistTrainBenchConfig) -> None:
    if not (store_path(cfg) / "manifest.json").exists():
        raise UserError(f"no activation store at {store_path(cfg)}: give --store DIR (e.g. "
                        "the demo's runs/demo/acts, from `bash scripts/demo.sh`)")
    bad = [n for n in cfg.ranks if n < 1 or cfg.batch_size % n]
    if bad or not cfg.ranks:
        raise UserError(f"--ranks {bad or cfg.ranks}: each must be >= 1 and divide "
                        f"--batch-size {cfg.batch_size}")
    for name in ("steps", "batch_size", "n_features", "k", "threads"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.warmup < 0:
        raise UserError("--warmup must be >= 0")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        run_worker(json.loads(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_arguments(parser, DistTrainBenchConfig)
    cfg = dataclass_from_namespace(DistTrainBenchConfig, parser.parse_args(argv))
    rows, raw = [], {}
    try:
        _validate(cfg)
        load_start = os.getloadavg()
        for world in cfg.ranks:
            print(f"{world} rank(s) ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="monosemantic-dist-bench-") as out_dir:
                raw[world] = launch(cfg, world, Path(out_dir))
            rows.append(summarize(cfg, world, raw[world]))
        load_end = os.getloadavg()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{cfg.parallel.capitalize()}-parallel training, gloo on CPU: store "
          f"{store_path(cfg)}, {cfg.architecture} "
          f"F={cfg.n_features:,} (k={cfg.k}), global batch {cfg.batch_size:,}, {cfg.threads} "
          f"thread(s) per rank, {cfg.warmup} warm-up + {cfg.steps} timed steps (medians); "
          f"{os.cpu_count()} CPUs, load average {load_start[0]:.1f} at start, "
          f"{load_end[0]:.1f} at end; torch {torch.__version__}.\n")
    print(markdown_table(rows))
    if cfg.json_out is not None:
        cfg.json_out.write_text(json.dumps(
            {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
             "rows": rows, "ranks": {str(k): v for k, v in raw.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
