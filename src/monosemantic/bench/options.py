"""`RealBenchOptions`: the options of `monosemantic bench RUN [RUN ...] --out OUT` (the benchmark
of trained SAEs on their held-out activations), nested in `BenchConfig` as `real`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from monosemantic.config import ConfigError

PROBE_TASK_NAMES = ("prose", "comment", "string", "keyword", "capitalised", "line_start")
"""The sparse-probing tasks (their labelling rules: bench/tasks.py and docs/bench.md)."""


def _all_tasks() -> list[str]:
    return list(PROBE_TASK_NAMES)


def _default_ks() -> list[int]:
    return [1, 2, 5]


@dataclass
class RealBenchOptions:
    """How trained runs are benchmarked (their held-out rows, the probes, the matching)."""

    out: Path | None = None
    """Folder for the results (new or empty): OUT/<run>/bench.json per run, OUT/bench.json,
    bench.md, compare.html and the Pareto plots. Written all at once at the end."""
    holdout_tokens: int = 16384
    """Held-out store rows read per run: the first N of the run's held-out range (or of
    --rows), in corpus order (all of them when there are fewer; the number used is recorded).
    Their codes are held dense: 4·N·F bytes (268 MB at N = 16384, F = 4096); lower it for
    large F."""
    batch_rows: int = 2048
    """Store rows encoded per SAE forward."""
    metrics: list[str] = field(default_factory=list)
    """Per-run metrics to compute (default: every one in bench/metrics.py's METRICS)."""
    tasks: list[str] = field(default_factory=_all_tasks)
    """Sparse-probing tasks (each must find both classes in the held-out rows)."""
    ks: list[int] = field(default_factory=_default_ks)
    """Sparse-probe sizes: the k features of largest class-mean difference."""
    max_per_class: int = 1000
    """Tokens sampled per class and task at most (balanced: both classes get the same
    number, the smaller class's count when it has fewer)."""
    min_per_class: int = 20
    """Tokens a task needs per class; fewer is an error that names the task (raise
    --holdout-tokens, or leave the task out of --tasks)."""
    test_fraction: float = 0.25
    """Share of each task's balanced sample held out to score the probes (stratified)."""
    sample_seed: int = 0
    """Seed of the balanced sampling and the train/test split of every task."""
    pair: list[int] = field(default_factory=list)
    """Extra pairs of runs to match for seed consistency, by position among RUN from 1
    (`--pair 1 2 --pair 1 3`); runs with the same model, hook and SAE config that differ in
    training seed are paired anyway."""
    hungarian_max_features: int = 16384
    """Largest F matched one-to-one (Hungarian, an F x F float64 cost matrix); above it each
    feature takes its best cosine in the other SAE (blocked, no one-to-one constraint)."""
    absorption_words: int = 3000
    """Feature absorption: words of the first-letter tasks (wordfreq's most frequent that are
    one token; bench/absorption.py). Runs the language model once per word (one token after a
    cached prefix): about 45 s at 3,000 on Gemma 3 270M on two CPU cores."""
    neuron_tokens: int = 16384
    """Features vs neurons: the first N rows of the sample (all when fewer) are computed again
    by the language model over the store's own contexts to read the MLP neurons
    (findings/replay.py)."""
    mlp_layer: int | None = None
    """Features vs neurons: the MLP layer whose neurons the features are compared with
    (default: the last MLP the hooked activation has seen)."""
    neuron_weak_r: float = 0.3
    """Features vs neurons: a feature whose largest |r| with every neuron is below this is
    weakly correlated (the paper's line)."""
    model: str | None = None
    """Model spec to load instead of each run's recorded one (its tokenizer decodes the stored
    tokens; absorption and neurons run it), e.g. the model moved; for a pretrained SAE folder
    that names none: the model it reads."""
    hook: str | None = None
    """With pretrained SAE folders among RUN: the hook point they read, when the folder does
    not name it (a run given beside them must read the same)."""
    store: Path | None = None
    """Activation store to read instead of the one each run recorded (e.g. it moved); needed
    for a pretrained SAE folder, which comes with none."""
    rows: str | None = None
    """Store rows START:STOP to sample instead of each run's held-out rows (the same rows for
    every RUN, e.g. a run's held-out rows for a pretrained SAE beside it); default: the
    held-out rows, or every store row for an SAE that trained on none of the store's."""

    def validate(self) -> None:
        """Raise `ConfigError` for options that cannot work (before anything is read)."""
        for name in ("holdout_tokens", "batch_rows", "max_per_class", "min_per_class",
                     "hungarian_max_features", "absorption_words", "neuron_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got "
                                  f"{getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must lie in (0, 1), got {self.test_fraction}")
        if self.min_per_class > self.max_per_class:
            raise ConfigError(f"--min-per-class {self.min_per_class} exceeds --max-per-class "
                              f"{self.max_per_class}")
        unknown = sorted(set(self.tasks) - set(PROBE_TASK_NAMES))
        if unknown:
            raise ConfigError(f"unknown --tasks {unknown}: choose from "
                              f"{', '.join(PROBE_TASK_NAMES)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"--tasks lists one twice: {self.tasks}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"--ks must be positive integers, got {self.ks}")
        if not 0 < self.neuron_weak_r < 1:
            raise ConfigError(f"--neuron-weak-r must lie in (0, 1), got {self.neuron_weak_r}")
        if self.mlp_layer is not None and self.mlp_layer < 0:
            raise ConfigError(f"--mlp-layer must be >= 0, got {self.mlp_layer}")
        if len(self.pair) % 2:
            raise ConfigError(f"--pair takes two run positions at a time, got {self.pair}")
