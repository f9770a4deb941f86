"""`monosemantic bench --synthetic OUT`: train every architecture on synthetic data with known
features and score how well each recovered them.

The data is generated once (`SyntheticFeatures`, `SyntheticTrainData`); each architecture is an
ordinary training run in OUT/runs/<architecture>/ (the trainer's own code path, `train(cfg,
data=...)`), loaded back from its saved SAE and scored on held-out tokens (`score_recovery`).
OUT/bench_synthetic.json is written once, atomically, after every architecture is scored: a
failed or interrupted benchmark leaves no result file (its finished runs stay in OUT/runs/).
`bench RUN [RUN ...] --out OUT` (trained SAEs on real activations) is bench/real.py.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import torch

from monosemantic.bench.config import BENCH_JSON, BENCH_PNG, BenchConfig
from monosemantic.bench.data import SyntheticTrainData
from monosemantic.bench.recovery import Matching, Recovery, score_recovery
from monosemantic.bench.synthetic import ROLES, SyntheticFeatures
from monosemantic.config import to_dict
from monosemantic.console import redirected, say
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.sae import SAE, SAEConfig, load_sae
from monosemantic.train.config import TrainConfig, validate

__all__ = ["BenchConfig", "run_bench", "benchmark_architecture"]

SCORE_CHUNK_ROWS = 4096
"""Held-out tokens encoded per chunk while scoring (memory: chunk × F codes)."""


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmark `cfg` asks for; returns what OUT/bench_synthetic.json (with
    --synthetic) or OUT/bench.json (`bench RUN ... --out OUT`, bench/real.py) holds."""
    if cfg.synthetic is None:
        if cfg.run:
            from monosemantic.bench.real import run_real_bench

            return run_real_bench(cfg)
        raise UserError("give trained runs and --out OUT (`monosemantic bench RUN [RUN ...] "
                        "--out OUT`), or --synthetic OUT (the synthetic ground-truth "
                        "benchmark)")
    if cfg.run:
        raise UserError("give either RUN ... or --synthetic OUT, not both")
    out = Path(cfg.synthetic)
    train_cfgs = check_bench(cfg, out)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out, train_cfgs)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: BenchConfig, out: Path, train_cfgs: dict[str, TrainConfig]) -> dict[str, Any]:
    features = SyntheticFeatures(cfg.data)
    data = SyntheticTrainData(features, cfg.n_tokens, cfg.eval_tokens, cfg.batch_size,
                              cfg.train_seed)
    say(f"bench --synthetic {out}: d = {cfg.data.d}, {cfg.data.n_true} true features, "
        f"{len(cfg.architectures)} architectures x {cfg.steps} steps of {cfg.batch_size}")
    results = {arch: benchmark_architecture(train_cfgs[arch], features, data, cfg.matching)
               for arch in cfg.architectures}
    report = {"bench": to_dict(cfg), "synthetic": to_dict(cfg.data),
              "frequency": features.frequency_T.tolist(), "architectures": results}
    atomic_write_text(out / BENCH_JSON, json.dumps(report, indent=1) + "\n")
    say(format_table(results))
    say(f"wrote {out / BENCH_JSON}")
    if cfg.plot:
        from monosemantic.bench.plot import plot_recovery

        png = plot_recovery(results, features.frequency_T, features.role_T, ROLES,
                            out / BENCH_PNG)
        say(f"wrote {png}" if png else "matplotlib is not installed: no plot "
            "(pip install monosemantic[plots])")
    return report


def check_bench(cfg: BenchConfig, out: Path) -> dict[str, TrainConfig]:
    """Every architecture's `TrainConfig`, with every mistake found before anything is
    generated or written: bad options, an OUT folder that is not new or empty."""
    cfg.validate()
    train_cfgs = {arch: train_config(cfg, arch, out / "runs" / arch)
                  for arch in cfg.architectures}
    for tcfg in train_cfgs.values():
        validate(tcfg)
    if cfg.matching == "hungarian" and importlib.util.find_spec("scipy") is None:
        raise UserError("Hungarian matching needs scipy (`pip install scipy`, or "
                        "monosemantic[analysis]); or pass --matching greedy")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: give a new folder to "
                        "--synthetic (or delete the old benchmark)")
    return train_cfgs


def train_config(cfg: BenchConfig, arch: str, out: Path) -> TrainConfig:
    """The training run of one architecture (its recipe, with the bench's shared options)."""
    sae = SAEConfig(architecture=arch, n_features=cfg.resolved_n_features(),
                    k=cfg.resolved_k(), l1_coefficient=cfg.l1_coefficient,
                    l0_coefficient=cfg.l0_coefficient,
                    jumprelu_init_threshold=cfg.jumprelu_init_threshold)
    # `store` only names the source in cfg.json: `train(data=...)` replaces it, and the saved
    # SAE's metadata records the generator's config.
    return TrainConfig(out=out, store=Path("synthetic"), sae=sae, steps=cfg.steps,
                       batch_size=cfg.batch_size, lr=cfg.lr or None, seed=cfg.train_seed,
                       device=cfg.device, eval_every=0, checkpoint_every=0,
                       log_every=max(1, cfg.steps // 10), eval_max_rows=cfg.eval_tokens)


def benchmark_architecture(tcfg: TrainConfig, features: SyntheticFeatures,
                           data: SyntheticTrainData, matching: Matching = "hungarian"
                           ) -> dict[str, Any]:
    """Train one architecture on `data`, score its recovery; the JSON-ready result."""
    from monosemantic.train.trainer import train

    arch = tcfg.sae.architecture
    start = time.perf_counter()
    with redirected(None):
        run = train(tcfg, data=data)
    seconds = time.perf_counter() - start
    sae = load_sae(run / "sae")
    recovery = score_sae(sae, features, data, matching)
    final_eval = _last_record(run, "eval")
    result = {
        "run": str(run),
        "training": {"steps": tcfg.steps, "batch_size": tcfg.batch_size, "lr": tcfg.lr,
                     "seed": tcfg.seed, "sae": to_dict(tcfg.sae), "wall_time_s": seconds},
        "reconstruction": {k: final_eval.get(k) for k in ("variance_explained", "nmse", "l0")},
        "recovery": recovery.summary(features.frequency_T, features.role_T, ROLES),
        "per_feature": {"matched": recovery.matched_T.tolist(),
                        "cosine": recovery.cosine_T.tolist(),
                        "mcc": _nan_to_none(recovery.corr_T),
                        "f1": _nan_to_none(recovery.f1_T)},
    }
    summary = result["recovery"]
    say(f"  {arch}: {seconds:.1f} s, mean cosine {summary['mean_cosine']:.3f}, recovered "
        f"{summary['recovered']:.2f}, MCC {summary['mcc']:.3f}")
    return result


@torch.no_grad()
def score_sae(sae: SAE, features: SyntheticFeatures, data: SyntheticTrainData,
              matching: Matching = "hungarian") -> Recovery:
    """Recovery of `sae` (a saved SAE: it reads raw, unnormalised tokens) on the held-out
    tokens of `data`."""
    device = next(sae.parameters()).device
    chunks = ((sae.encode(x_ND.to(device)).cpu(), truth)
              for x_ND, truth in data.held_out(SCORE_CHUNK_ROWS))
    return score_recovery(sae.W_dec, features.directions_TD, chunks, matching)


def _last_record(run: Path, split: str) -> dict[str, Any]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return next((r for r in reversed(records) if r.get("split") == split), {})


def _nan_to_none(t_T: torch.Tensor) -> list[float | None]:
    return [None if v != v else v for v in t_T.tolist()]


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The comparison table printed at the end (one row per architecture)."""
    head = (f"{'architecture':<14}{'mean cos':>9}{'recov.':>8}{'MMCS':>7}{'MCC':>7}"
            f"{'prec.':>7}{'recall':>7}{'F1':>7}{'VE':>7}{'L0':>6}{'time s':>8}")
    rows = [head, "-" * len(head)]
    for arch, res in results.items():
        r, rec = res["recovery"], res["reconstruction"]

        def num(v: float | None, width: int = 7, fmt: str = ".3f") -> str:
            return f"{'-' if v is None else format(v, fmt):>{width}}"

        rows.append(f"{arch:<14}{num(r['mean_cosine'], 9)}{num(r['recovered'], 8, '.2f')}"
                    f"{num(r['mean_max_cosine'])}{num(r['mcc'])}{num(r['precision'])}"
                    f"{num(r['recall'])}{num(r['f1'])}{num(rec['variance_explained'])}"
                    f"{num(rec['l0'], 6, '.1f')}{num(res['training']['wall_time_s'], 8, '.1f')}")
    return "\n".join(rows)
