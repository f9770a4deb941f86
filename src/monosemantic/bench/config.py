"""`BenchConfig`: the options of `monosemantic bench` (saved in OUT/bench_synthetic.json, or
in OUT/bench.json for the benchmark of trained runs, `bench RUN [RUN ...] --out OUT`).

The training options are one value shared by every architecture; each architecture reads the
SAE options that apply to it (`k` for topk/batchtopk, `l1_coefficient` for relu, ...) and keeps
its recipe's defaults for the rest. The sparsity and lr defaults here are measured on the
default synthetic instance (docs/bench.md): the recipes' own values are tuned for runs of 10^8+
tokens of d ≥ 512 and do not train a d = 32 dictionary in a few thousand steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from monosemantic.bench.options import RealBenchOptions
from monosemantic.bench.synthetic import SyntheticConfig
from monosemantic.config import ConfigError
from monosemantic.sae.factory import SAE_CLASSES, sae_class

BENCH_JSON = "bench_synthetic.json"
BENCH_PNG = "bench_synthetic.png"


def _all_architectures() -> list[str]:
    # Read at call time: an architecture registered in SAE_CLASSES is benchmarked by default.
    return list(SAE_CLASSES)


@dataclass
class BenchConfig:
    """Benchmark SAEs: trained runs on their held-out activations (`RUN [RUN ...] --out OUT`),
    or every architecture on synthetic data with known features (`--synthetic OUT`)."""

    run: list[Path] = field(default_factory=list, metadata={"positional": True})
    """Trained runs to benchmark on their held-out store rows (with --out; not with
    --synthetic)."""
    real: RealBenchOptions = field(default_factory=RealBenchOptions,
                                   metadata={"short_flags": True})
    """Options of the benchmark of trained runs (also spelled without `real.`: --out, ...)."""
    synthetic: Path | None = None
    """Folder for the synthetic benchmark (new or empty): runs/<architecture>/ and
    bench_synthetic.json, .png go there."""
    architectures: list[str] = field(default_factory=_all_architectures)
    """Architectures to train (default: every registered one)."""
    data: SyntheticConfig = field(default_factory=SyntheticConfig,
                                  metadata={"short_flags": True})
    """The synthetic features and tokens (also spelled without `data.`: --d, --n-true, ...)."""

    # ---- the SAEs ----
    n_features: int = 0
    """Dictionary size F of every SAE (0: twice the number of true features)."""
    k: int = 0
    """topk / batchtopk k (0: the true mean number of active features, rounded)."""
    l1_coefficient: float = 1.0
    """relu's sparsity coefficient (on inputs scaled so E||x||^2 = d)."""
    l0_coefficient: float = 1.0
    """jumprelu's L0 coefficient."""
    jumprelu_init_threshold: float = 0.5
    """jumprelu's initial threshold (the recipe's 0.01 takes too many steps to grow here)."""

    # ---- training ----
    steps: int = 2000
    """Optimizer steps per architecture."""
    batch_size: int = 256
    """Tokens per step."""
    lr: float = 3e-3
    """Adam learning rate for every architecture (0: each recipe's default)."""
    n_tokens: int = 65536
    """Training tokens drawn (held in memory; the steps pass over them in shuffled epochs)."""
    eval_tokens: int = 16384
    """Held-out tokens the recovery is scored on (drawn after the training tokens)."""
    train_seed: int = 0
    """Seed of the SAEs' initialisation and the batch order."""
    device: str = "cpu"
    """Torch device of the training (cpu, cuda, auto, ...); with RUN ...: where the SAEs
    encode the held-out rows."""
    threads: int = 0
    """CPU threads of torch during the benchmark (0: torch's default). These SAEs are tiny:
    on a machine shared with other work, 1 avoids threads waiting on each other."""

    # ---- scoring ----
    matching: Literal["hungarian", "greedy"] = "hungarian"
    """Matching of decoder rows to true features: hungarian (optimal, needs scipy) or greedy."""
    plot: bool = True
    """Also draw bench_synthetic.png (needs matplotlib; skipped with a note without it)."""

    def resolved_n_features(self) -> int:
        return self.n_features or 2 * self.data.n_true

    def resolved_k(self) -> int:
        return self.k or max(1, round(self.data.mean_active))

    def validate(self) -> None:
        """Raise `ConfigError` for options that cannot work (before anything is generated)."""
        if not self.architectures:
            raise ConfigError("--architectures is empty: name at least one of "
                              f"{', '.join(SAE_CLASSES)}")
        if len(set(self.architectures)) != len(self.architectures):
            raise ConfigError(f"--architectures lists one twice: {self.architectures}")
        for name in self.architectures:
            sae_class(name)
        self.data.validate()
        for name in ("steps", "batch_size", "n_tokens", "eval_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got "
                                  f"{getattr(self, name)}")
        for name in ("n_features", "k", "lr", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (0: the default), "
                                  f"got {getattr(self, name)}")
        if self.n_tokens < self.batch_size:
            raise ConfigError(f"--n-tokens {self.n_tokens} is fewer than one batch of "
                              f"{self.batch_size}: raise --n-tokens or lower --batch-size")
