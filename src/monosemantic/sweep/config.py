"""`SweepConfig`: the options of `monosemantic sweep` (saved as OUT/sweep_cfg.json).

The grid axes are lists (`--n-features 1k 2k 4k --tokens 1M 2M`); every other option is one
value shared by all runs of the sweep. `RunOptions` holds the training options passed to each
run's `TrainConfig` unchanged; their defaults are `TrainConfig`'s, so a sweep trains the same
recipe as `monosemantic train` (relu: λ warmed up over 5%, lr decayed over the last 20%, inputs
scaled so E||x||² = d, gradient clipping at 1; topk: AuxK, unit-norm decoder rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from monosemantic.config import ConfigError
from monosemantic.sae.factory import ARCHITECTURES, sae_class

SWEEP_CFG = "sweep_cfg.json"
"""File name of the saved options inside the sweep's folder."""


@dataclass
class RunOptions:
    """Training options shared by every run of the sweep (see `monosemantic train --help`)."""

    batch_size: int = 4096
    """Activations (tokens) per optimizer step."""
    holdout_fraction: float = 0.02
    """Fraction of the store's rows held out for evaluation (the last rows, corpus order)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (beta1, beta2). No weight decay is applied."""
    l1_warmup_fraction: float = 0.05
    """Sparsity coefficient warmed up linearly from 0 over this fraction of the steps."""
    lr_warmup_fraction: float = 0.0
    """Learning rate warmed up linearly from 0 over this fraction of the steps."""
    lr_decay_fraction: float = 0.2
    """Learning rate decayed linearly to 0 over this last fraction of the steps."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    dead_window_tokens: int | None = None
    """A feature is dead if it did not fire in the last N tokens. Default: min(10M, a fifth of
    the run), at least one batch."""
    dense_threshold: float = 0.1
    """A feature is dense if it fires on more than this fraction of tokens."""
    eval_every: int = 1000
    """Evaluate on the held-out rows every N steps during training (0: only at the end)."""
    eval_max_rows: int = 65536
    """At most this many held-out rows per evaluation during training."""
    checkpoint_every: int = 1000
    """Write a checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """Number of most recent checkpoints kept per run."""
    log_every: int = 100
    """Write metrics.jsonl every N steps; the record's training loss is that of the last
    logging window."""
    seed: int = 0
    """Base seed for initialization and the data order; each dictionary size trains with its
    own seed derived from it (`grid.size_seed`), so sizes do not share initial directions."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    autocast: Literal["auto", "bfloat16", "float32"] = "auto"
    """Autocast dtype of the forward pass: auto = bfloat16 on GPU, float32 (off) on CPU."""
    compile: bool = False
    """Compile the SAE forward with torch.compile."""

    def __post_init__(self) -> None:
        self.adam_betas = cast("tuple[float, float]", tuple(self.adam_betas))


@dataclass
class SweepConfig:
    """Train a grid of SAEs (features x tokens x lr x sparsity) as ordinary run folders and
    tabulate them in OUT/sweep.jsonl."""

    out: Path = field(metadata={"positional": True})
    """Sweep folder: one run folder per grid point, sweep_cfg.json and sweep.jsonl."""
    store: Path
    """Activation store every run trains on (from `monosemantic harvest`)."""
    n_features: list[str]
    """Dictionary sizes F. Binary suffixes: 1k = 1024, 16k = 16384, 1M = 2^20; also 2^14 or a
    plain number."""
    tokens: list[int]
    """Training tokens per run. Decimal suffixes: 1M = 10^6, 2.5M, 1B = 10^9. Each run takes
    ceil(tokens / batch size) steps; the record says the tokens it trained on."""
    architecture: str = field(default="relu", metadata={"choices": ARCHITECTURES})
    """SAE architecture of every run: relu (the Scaling Monosemanticity recipe), topk,
    batchtopk, jumprelu or matryoshka."""
    lr: list[float] = field(default_factory=list)
    """Learning rates (a grid axis). Default: the architecture's (relu 5e-5; topk, batchtopk
    and matryoshka 2e-4 / sqrt(F / 2^14), so it follows the size)."""
    l1_coefficient: list[float] = field(default_factory=list)
    """relu only: sparsity coefficients λ (a grid axis). Default: 5."""
    k: list[int] = field(default_factory=list)
    """topk / batchtopk / matryoshka only: active features per token (a grid axis). Default: 32."""
    l0_coefficient: list[float] = field(default_factory=list)
    """jumprelu only: L0 penalty weights (a grid axis). Default: 1."""
    train: RunOptions = field(default_factory=RunOptions, metadata={"short_flags": True})
    """Training options shared by every run; each is also accepted without the `train.`
    prefix (--batch-size, --seed, ...)."""
    eval_tokens: int = 0
    """Held-out rows (tokens) for each run's variance explained and L0; 0 = all of them."""
    loss_recovered: bool = True
    """Measure the loss recovered with each SAE spliced into the store's model (loaded once per
    process; skipped with a note when it cannot be loaded). false: not measured (None)."""
    loss_contexts: int = 16
    """Fresh corpus contexts (never harvested) for the loss recovered."""
    jobs: int = 1
    """Runs trained at once, each in its own worker process."""
    part: str | None = None
    """i/n: train only the grid points i, i+n, i+2n, ... (1-based), e.g. one part per machine
    on a shared folder; every part rewrites sweep.jsonl from all finished runs."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.store = Path(self.store)


def sparsity_field(architecture: str) -> str:
    """The `SAEConfig` field a sweep varies as the architecture's sparsity setting."""
    cls = sae_class(architecture)
    name = "k" if cls.uses_k else cls.sparsity_coefficient_field
    assert name is not None, f"{architecture} declares no sparsity setting"
    return name


SPARSITY_FIELDS = ("l1_coefficient", "k", "l0_coefficient")
"""The sweep's sparsity axes; one architecture uses one of them (`sparsity_field`)."""

_BINARY = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "b": 2**30}
_FEATURES = re.compile(r"^(?:(\d+(?:\.\d+)?)([kmgb]?)|2\^(\d+))$")


def parse_features(text: str | int) -> int:
    """A dictionary size: 16384, 16k (= 16384), 1M (= 2^20), 1.5k (= 1536) or 2^14."""
    if isinstance(text, int):
        return text
    raw = str(text).strip().lower().replace("_", "").replace("**", "^")
    match = _FEATURES.match(raw)
    if match is None:
        raise ConfigError(f"--n-features: {text!r} is not a size such as 16384, 16k or 2^14")
    if match.group(3) is not None:
        return 2 ** int(match.group(3))
    value = float(match.group(1)) * _BINARY[match.group(2)]
    if value != int(value):
        raise ConfigError(f"--n-features: {text!r} is not a whole number of features")
    return int(value)


def parse_part(text: str | None) -> tuple[int, int]:
    """`--part i/n` as (i - 1, n); None is the whole grid (0, 1)."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"--part takes i/n with 1 <= i <= n (e.g. 1/2), got {text!r}")
    return int(match.group(1)) - 1, int(match.group(2))
