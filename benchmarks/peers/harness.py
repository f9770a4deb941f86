"""Timing harness shared by every library's step script (stdlib + torch only).

Each `*_step.py` script runs in its own process (in the library's own venv) and calls `main`
with a `build` callable: `build(spec, sample_BD) -> step` (`sample_BD`: the first data batch,
for libraries that initialise from data), where `step(x_BD)` performs one full optimizer
step exactly as that library's trainer does. The harness makes the synthetic data, runs the
warm-up steps, times `steps` more and prints one JSON object on stdout. One process per
measurement keeps peak RSS (`ru_maxrss`) specific to that library, architecture and dictionary
size; the caller repeats processes (interleaving libraries) and takes the median.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

Step = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class Spec:
    """What to measure; passed to the step script as one JSON argument."""

    arch: str
    """`relu` (standard SAE with L1 penalty) or `topk`."""
    d_in: int
    """Input width d."""
    n_features: int
    """Dictionary size F."""
    k: int
    """Active features per token for `topk`."""
    batch_size: int
    """Tokens per optimizer step."""
    steps: int
    """Timed optimizer steps."""
    warmup: int
    """Untimed optimizer steps before the timed ones (allocator and thread pool warm-up)."""
    data_batches: int
    """Distinct synthetic batches cycled through (they all stay in memory)."""
    seed: int
    """Seed for the data and the SAE initialization."""
    threads: int
    """torch intra-op threads; 0 keeps torch's default."""
    variant: str = ""
    """Library-specific choice, e.g. sparsify's optimizer (`adam`, `signum`); "" = default."""
    data: str = "gaussian"
    """`gaussian` (isotropic noise) or `sparse` (sparse sums of fixed directions, see
    `sparse_feature_batches`)."""
    weights: str = ""
    """safetensors file with W_enc [d, F], b_enc, W_dec [F, d], b_dec to start from; "" = the
    library's own initialisation."""


# The `sparse` data: each row sums ACTIVE_PER_ROW of DICT_FACTOR·d fixed random unit directions
# with exponential magnitudes, plus Gaussian noise carrying NOISE_SHARE of the energy: the
# superposition picture of LM activations, which an L1-penalised ReLU SAE encodes sparsely.
ACTIVE_PER_ROW = 16
DICT_FACTOR = 8
NOISE_SHARE = 0.05


def _normalise(x_BD: torch.Tensor) -> torch.Tensor:
    return x_BD * (x_BD.shape[1] / x_BD.pow(2).sum(dim=1).mean()).sqrt()


def sparse_feature_batches(d_in: int, batch_size: int, n_batches: int, dict_seed: int,
                           data_seed: int) -> list[torch.Tensor]:
    """`n_batches` float32 batches [batch, d] of the `sparse` data, mean ||x||^2 = d.

    The directions depend on `dict_seed` only, so batches from different `data_seed`s (training
    vs timing) come from one distribution."""
    dict_gen = torch.Generator().manual_seed(dict_seed)
    dirs_GD = torch.randn(DICT_FACTOR * d_in, d_in, generator=dict_gen)
    dirs_GD /= dirs_GD.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(data_seed)
    batches = []
    for _ in range(n_batches):
        idx_BK = torch.randint(0, dirs_GD.shape[0], (batch_size, ACTIVE_PER_ROW), generator=gen)
        mag_BK = torch.empty(batch_size, ACTIVE_PER_ROW).exponential_(generator=gen)
        signal_BD = torch.nn.functional.embedding_bag(idx_BK, dirs_GD, mode="sum",
                                                      per_sample_weights=mag_BK)
        noise_BD = torch.randn(batch_size, d_in, generator=gen)
        noise_scale = (NOISE_SHARE / (1 - NOISE_SHARE) * signal_BD.pow(2).sum()
                       / noise_BD.pow(2).sum()).sqrt()
        batches.append(_normalise(signal_BD + noise_scale * noise_BD))
    return batches


def synthetic_batches(spec: Spec) -> list[torch.Tensor]:
    """The timed float32 batches [batch, d] (`spec.data`), scaled so the mean of ||x||^2 is d."""
    if spec.data == "sparse":
        return sparse_feature_batches(spec.d_in, spec.batch_size, spec.data_batches,
                                      dict_seed=spec.seed, data_seed=spec.seed + 1)
    if spec.data != "gaussian":
        raise ValueError(f"unknown data {spec.data!r} (gaussian, sparse)")
    gen = torch.Generator().manual_seed(spec.seed)
    return [_normalise(torch.randn(spec.batch_size, spec.d_in, generator=gen))
            for _ in range(spec.data_batches)]


def load_weights(spec: Spec) -> dict[str, torch.Tensor]:
    """The tensors of `spec.weights` (W_enc, b_enc, W_dec, b_dec), checked against the spec."""
    from safetensors.torch import load_file

    tensors = load_file(spec.weights)
    want = {"W_enc": (spec.d_in, spec.n_features), "b_enc": (spec.n_features,),
            "W_dec": (spec.n_features, spec.d_in), "b_dec": (spec.d_in,)}
    for name, shape in want.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{spec.weights}: {name} has shape {tuple(tensors[name].shape)}, "
                             f"expected {shape}")
    return tensors


def _current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(step: Step, batches: list[torch.Tensor], spec: Spec) -> list[float]:
    """Seconds of each timed step (after `spec.warmup` untimed steps)."""
    n = len(batches)
    for i in range(spec.warmup):
        step(batches[i % n])
    seconds = []
    for i in range(spec.warmup, spec.warmup + spec.steps):
        start = time.perf_counter()
        step(batches[i % n])
        seconds.append(time.perf_counter() - start)
    return seconds


def main(library: str, version: str, build: Callable[[Spec, torch.Tensor], Step]) -> None:
    """Entry point of a step script: `python X_step.py '<Spec as JSON>'`."""
    spec = Spec(**json.loads(sys.argv[1]))
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    rss_after_imports = _current_rss_mib()
    batches = synthetic_batches(spec)
    torch.manual_seed(spec.seed)
    step = build(spec, batches[0])
    seconds = measure(step, batches, spec)
    result = {
        "library": library,
        "version": version,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "spec": asdict(spec),
        "tokens_per_s": spec.steps * spec.batch_size / sum(seconds),
        "median_step_s": statistics.median(seconds),
        "peak_rss_mib": _peak_rss_mib(),
        "rss_after_imports_mib": rss_after_imports,
    }
    print(json.dumps(result), flush=True)
