"""Trained-to-sparsity relu SAE weights that every library's relu benchmark starts from.

At initialisation about half of a ReLU SAE's codes are active; the L1 penalty makes them sparse
within the first part of a run and they stay so. Timing from initialisation therefore measures
a dense regime that no real run stays in. This script trains our relu SAE (the Scaling
Monosemanticity loss, λ = 5) on the benchmark's `sparse` synthetic data (`peers/harness.py`)
until its codes are sparse, and saves W_enc, b_enc, W_dec, b_dec to a safetensors file that
monosemantic and SAELens both load before timing, so both run the same sparse regime.

The training uses a larger learning rate than the recipe's (only the regime matters here, not
the quality of the dictionary) and a smaller batch, and is cached under benchmarks/.cache/.

    .venv/bin/python benchmarks/sparse_weights.py --n-features 4096   # writes and prints the path
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR / "peers"))
import harness  # noqa: E402 (benchmarks/peers is not a package: the path insert comes first)

CACHE_DIR = BENCH_DIR / ".cache"


@dataclass(frozen=True)
class WeightsSpec:
    """How the starting weights are trained (all of it goes into the cache file's name)."""

    d_in: int
    """Input width d."""
    n_features: int
    """Dictionary size F."""
    seed: int = 0
    """Seed of the data's directions (the timing data uses the same) and of the SAE init."""
    steps: int = 400
    """Optimizer steps."""
    batch_size: int = 1024
    """Tokens per step while training the weights."""
    lr: float = 4e-3
    """Adam learning rate (80× the recipe's 5e-5, to reach the sparse regime quickly)."""

    def path(self) -> Path:
        return CACHE_DIR / (f"relu_d{self.d_in}_F{self.n_features}_s{self.seed}_n{self.steps}"
                            f"_b{self.batch_size}_lr{self.lr:g}.safetensors")


def l0(sae: torch.nn.Module, x_BD: torch.Tensor) -> float:
    """Mean number of active codes per row."""
    with torch.no_grad():
        return torch.count_nonzero(sae.encode(x_BD)).item() / x_BD.shape[0]


def train_weights(spec: WeightsSpec, log=print) -> dict[str, object]:
    """Train, save to `spec.path()` and return the metadata written beside the tensors."""
    from safetensors.torch import save_file

    from monosemantic.sae import SAEConfig
    from monosemantic.train.config import TrainConfig, resolve
    from monosemantic.train.state import TrainState
    from monosemantic.train.trainer import Loop

    with tempfile.TemporaryDirectory(prefix="monosemantic-weights-") as run_dir:
        cfg = TrainConfig(out=Path(run_dir), sae=SAEConfig("relu", n_features=spec.n_features),
                          batch_size=spec.batch_size, steps=spec.steps, lr=spec.lr,
                          seed=spec.seed, device="cpu")
        resolve(cfg, None, spec.d_in)
        state = TrainState.create(cfg, spec.d_in, torch.device("cpu"))
        loop = Loop(cfg, data=None, state=state, device=torch.device("cpu"))
        # Training rows and timing rows share the directions (dict_seed), not the draws.
        train_BD = harness.sparse_feature_batches(spec.d_in, spec.batch_size, 16, spec.seed,
                                                  data_seed=spec.seed + 1000)
        timing_BD = harness.sparse_feature_batches(spec.d_in, 4096, 1, spec.seed,
                                                   data_seed=spec.seed + 1)[0]
        start = time.perf_counter()
        for step in range(spec.steps):
            loop.step(train_BD[step % len(train_BD)])
            if (step + 1) % 50 == 0 or step + 1 == spec.steps:
                log(f"  step {step + 1}/{spec.steps}: L0 {l0(state.sae, timing_BD):.1f} of "
                    f"{spec.n_features} ({time.perf_counter() - start:.0f} s)")
    sae = state.sae
    meta = {**{k: str(v) for k, v in asdict(spec).items()},
            "l0_on_timing_data": f"{l0(sae, timing_BD):.2f}",
            "train_seconds": f"{time.perf_counter() - start:.0f}"}
    spec.path().parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(sae, name).detach().contiguous()
               for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file(tensors, str(spec.path()), metadata=meta)
    return meta


def ensure_weights(spec: WeightsSpec, log=print) -> tuple[Path, dict[str, str]]:
    """The cached weights file for `spec` (trained now if missing) and its metadata."""
    from safetensors import safe_open

    if not spec.path().exists():
        log(f"training sparse relu weights for F={spec.n_features} -> {spec.path()}")
        train_weights(spec, log)
    with safe_open(str(spec.path()), framework="pt") as fh:
        return spec.path(), dict(fh.metadata() or {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=640)
    parser.add_argument("--n-features", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path, meta = ensure_weights(WeightsSpec(args.d_in, args.n_features, args.seed))
    print(json.dumps({"path": str(path), **meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
