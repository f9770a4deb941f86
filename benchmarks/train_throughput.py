"""SAE training throughput (tokens/s) and peak memory: monosemantic vs SAELens vs sparsify.

    .venv/bin/python benchmarks/train_throughput.py              # full: F 4096 and 16384
    .venv/bin/python benchmarks/train_throughput.py --features 4096 --steps 3 --repeats 1
    .venv/bin/python benchmarks/train_throughput.py --write      # append to docs/benchmarks.md
    .venv/bin/python benchmarks/train_throughput.py --threads 1  # on a busy machine

Every measurement is a fresh process that does `warmup` untimed and `steps` timed optimizer
steps on the same synthetic float32 data (`--data`, scaled so E||x||^2 = d, fixed seed) with
one library's own training step; relu runs twice: from the same trained-to-sparsity weights
(`start = trained`, the reported regime, see sparse_weights.py) and from each library's own
initialisation (`start = init`, the dense regime of a run's first steps); peer libraries run
from their own venvs under benchmarks/.venvs/ (created here on first use: torch pinned to the
project's version first, then
`sae-lens` / `eai-sparsify`). Rounds interleave the libraries so that a change in machine load
hits all of them alike; tokens/s is the median over rounds, peak RSS the largest `ru_maxrss`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monosemantic.config import add_dataclass_arguments, dataclass_from_namespace
from monosemantic.errors import UserError
from peer_envs import PEERS, PeerEnv, ensure_env
from sparse_weights import WeightsSpec, ensure_weights

BENCH_DIR = Path(__file__).resolve().parent
DOCS_FILE = BENCH_DIR.parent / "docs" / "benchmarks.md"
# Which peer each architecture is judged against, and the ratio the project aims for.
TARGETS = {"relu": ("SAELens", 2.0), "topk": ("sparsify", 1.0)}
STARTS = ("trained", "init")


@dataclass
class ThroughputConfig:
    """Training-step throughput of monosemantic, SAELens and sparsify, side by side."""

    features: list[int] = field(default_factory=lambda: [4096, 16384])
    """Dictionary sizes F to measure."""
    archs: list[str] = field(default_factory=lambda: ["relu", "topk"])
    """Architectures: relu (vs SAELens's standard SAE) and topk (vs sparsify and SAELens)."""
    d_in: int = 640
    """Input width d (Gemma 3 270M's residual stream)."""
    batch_size: int = 4096
    """Tokens per optimizer step."""
    k: int = 32
    """Active features per token for topk (the same k for every library)."""
    steps: int = 10
    """Timed optimizer steps per process."""
    warmup: int = 2
    """Untimed optimizer steps before the timed ones."""
    repeats: int = 3
    """Rounds: each round runs every measurement once, in a fresh process."""
    data_batches: int = 4
    """Distinct synthetic batches cycled through (all held in memory, ~10 MiB each at d=640)."""
    threads: int = 0
    """torch intra-op threads in every process; 0 keeps torch's default."""
    seed: int = 0
    """Seed for the synthetic data and the initialisation."""
    starts: list[str] = field(default_factory=lambda: list(STARTS))
    """relu starting points: `trained` (every library loads the same weights trained to
    sparsity by sparse_weights.py; the reported regime) and/or `init` (each library's own
    initialisation: about half the codes active). topk always starts from init (its codes are
    k-sparse from the first step)."""
    data: str = "sparse"
    """Synthetic rows: `sparse` (sparse sums of fixed directions; needed by start=trained) or
    `gaussian` (isotropic noise)."""
    peers: list[str] = field(default_factory=lambda: ["saelens", "sparsify"])
    """Peer libraries to run (saelens, sparsify); their venvs are created on first use."""
    sparsify_optimizers: list[str] = field(default_factory=lambda: ["adam"])
    """Optimizers to run sparsify with: adam (the same as the others) and/or signum (its
    default: schedule-free SignSGD)."""
    json_out: Path | None = None
    """Also write the raw per-process results to this JSON file."""


@dataclass(frozen=True)
class Job:
    """One (library, architecture, F) measurement."""

    library: str
    """Name in the table: monosemantic, SAELens, sparsify."""
    arch: str
    """relu or topk."""
    n_features: int
    """Dictionary size F."""
    python: Path
    """Interpreter of the venv the library lives in."""
    script: Path
    """The library's step script under benchmarks/peers/."""
    variant: str = ""
    """Library-specific choice passed to the step script (sparsify's optimizer)."""
    start: str = "init"
    """`init` (the library's own initialisation) or `trained` (the shared weights file)."""
    weights: str = ""
    """The shared weights file when start = trained."""


def build_jobs(cfg: ThroughputConfig, envs: dict[str, PeerEnv],
               weights: dict[int, Path]) -> list[Job]:
    """Every measurement of one round, grouped by (arch, start, F), our own library first.

    `weights` maps F to the shared trained relu weights (needed when "trained" is a start)."""
    peers_dir = BENCH_DIR / "peers"
    jobs = []
    for arch in cfg.archs:
        starts = [s for s in STARTS if s in cfg.starts] if arch == "relu" else ["init"]
        for start in starts:
            for n_features in cfg.features:
                common = {"start": start,
                          "weights": str(weights[n_features]) if start == "trained" else ""}
                jobs.append(Job("monosemantic", arch, n_features, Path(sys.executable),
                                peers_dir / "monosemantic_step.py", **common))
                if "saelens" in envs:
                    jobs.append(Job("SAELens", arch, n_features, envs["saelens"].python,
                                    peers_dir / "saelens_step.py", **common))
                if "sparsify" in envs and arch == "topk":
                    jobs.extend(Job("sparsify", arch, n_features, envs["sparsify"].python,
                                    peers_dir / "sparsify_step.py", variant=opt, **common)
                                for opt in cfg.sparsify_optimizers)
    return jobs


def trained_weights(cfg: ThroughputConfig) -> tuple[dict[int, Path], dict[int, dict[str, str]]]:
    """The shared relu weights per F (trained and cached on first use) and their metadata."""
    if "relu" not in cfg.archs or "trained" not in cfg.starts:
        return {}, {}
    paths, metas = {}, {}
    for n_features in cfg.features:
        paths[n_features], metas[n_features] = ensure_weights(
            WeightsSpec(cfg.d_in, n_features, cfg.seed),
            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    return paths, metas


def run_job(job: Job, cfg: ThroughputConfig) -> dict[str, Any]:
    """Run one measurement process and return its JSON result."""
    spec = {"arch": job.arch, "d_in": cfg.d_in, "n_features": job.n_features, "k": cfg.k,
            "batch_size": cfg.batch_size, "steps": cfg.steps, "warmup": cfg.warmup,
            "data_batches": cfg.data_batches, "seed": cfg.seed, "threads": cfg.threads,
            "variant": job.variant, "data": cfg.data, "weights": job.weights}
    # Offline: the peers import transformers / huggingface_hub, which must not go looking.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "MONOSEMANTIC_QUIET": "1"}
    proc = subprocess.run([str(job.python), str(job.script), json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=job.script.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise UserError(f"{job.library} {job.arch} ({job.start}) F={job.n_features} failed "
                        f"(exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def run_rounds(jobs: list[Job], cfg: ThroughputConfig) -> list[list[dict[str, Any]]]:
    """Results per job (in `jobs` order), one per round; the job order rotates every round."""
    results: list[list[dict[str, Any]]] = [[] for _ in jobs]
    order = list(range(len(jobs)))
    for r in range(cfg.repeats):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            job = jobs[i]
            variant = f" ({job.variant})" if job.variant else ""
            print(f"[round {r + 1}/{cfg.repeats}] {job.library}{variant} {job.arch} "
                  f"({job.start}) F={job.n_features} ...", file=sys.stderr, flush=True)
            result = run_job(job, cfg)
            print(f"    {result['tokens_per_s']:,.0f} tokens/s, peak RSS "
                  f"{result['peak_rss_mib']:,.0f} MiB", file=sys.stderr, flush=True)
            results[i].append(result)
    return results


def summarize(jobs: list[Job], results: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per job: median tokens/s, largest peak RSS, and the ratio ours / this library."""
    rows = []
    for job, runs in zip(jobs, results):
        rows.append({
            "library": job.library, "variant": job.variant, "arch": job.arch,
            "start": job.start, "n_features": job.n_features, "version": runs[0]["version"],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
            "tokens_per_s_runs": [r["tokens_per_s"] for r in runs],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "rss_after_imports_mib": statistics.median(r["rss_after_imports_mib"] for r in runs),
            "torch_threads": runs[0]["torch_threads"], "torch": runs[0]["torch"],
        })
    ours = {(r["arch"], r["start"], r["n_features"]): r["tokens_per_s"]
            for r in rows if r["library"] == "monosemantic"}
    for row in rows:
        mine = ours.get((row["arch"], row["start"], row["n_features"]))
        row["ours_over_this"] = None if row["library"] == "monosemantic" or mine is None \
            else mine / row["tokens_per_s"]
    return rows


def _label(row: dict[str, Any]) -> str:
    variant = f" ({row['variant']})" if row["variant"] else ""
    return f"{row['library']} {row['version']}{variant}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| arch | start | F | library | tokens/s (median) | min–max over rounds "
             "| peak RSS MiB | RSS after imports MiB | monosemantic ÷ this |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratio = "—" if row["ours_over_this"] is None else f"{row['ours_over_this']:.2f}×"
        runs = row["tokens_per_s_runs"]
        lines.append(f"| {row['arch']} | {row['start']} | {row['n_features']:,} | {_label(row)} "
                     f"| {row['tokens_per_s']:,.0f} | {min(runs):,.0f}–{max(runs):,.0f} "
                     f"| {row['peak_rss_mib']:,.0f} "
                     f"| {row['rss_after_imports_mib']:,.0f} | {ratio} |")
    return "\n".join(lines)


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets: relu ≥ 2× SAELens's standard SAE, topk ≥ sparsify.

    Judged on the reported regime (relu from the trained weights when measured); rows from
    init are listed after as information."""
    out = []
    relu_starts = {row["start"] for row in rows if row["arch"] == "relu"}
    reported = "trained" if "trained" in relu_starts else "init"
    rows = sorted(rows, key=lambda row: row["arch"] == "relu" and row["start"] != reported)
    for row in rows:
        target = TARGETS.get(row["arch"])
        if target is None or row["library"] != target[0] or row["ours_over_this"] is None:
            continue
        if row["library"] == "sparsify" and row["variant"] not in ("", "adam"):
            continue
        verdict = "met" if row["ours_over_this"] >= target[1] else "NOT met"
        if row["arch"] == "relu" and row["start"] != reported:
            verdict = f"information only: from {row['start']}"
        out.append(f"- {row['arch']} ({row['start']}), F={row['n_features']:,}: "
                   f"{row['ours_over_this']:.2f}× {_label(row)} (target ≥ {target[1]:g}×: "
                   f"{verdict})")
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(cfg: ThroughputConfig, rows: list[dict[str, Any]], envs: dict[str, PeerEnv],
           load: tuple[tuple[float, ...], tuple[float, ...]],
           weight_metas: dict[int, dict[str, str]]) -> str:
    """The markdown section printed (and appended to docs/benchmarks.md with --write)."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    threads = sorted({row["torch_threads"] for row in rows})
    peer_versions = "; ".join(
        f"{env.spec.label}: {', '.join(f'{k} {v}' for k, v in env.versions.items())}"
        + (f" (venv created in {env.install_seconds:.0f} s)" if env.install_seconds else "")
        for env in envs.values())
    lines = [
        f"## Training throughput ({when})", "",
        f"`benchmarks/train_throughput.py`: d={cfg.d_in}, batch {cfg.batch_size}, float32 on CPU, "
        f"topk k={cfg.k}; {cfg.warmup} warm-up + {cfg.steps} timed steps per process, "
        f"{cfg.repeats} interleaved round(s), median tokens/s; peak RSS = largest ru_maxrss of "
        "the measuring process (includes the library's imports and the synthetic data).", "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs, torch threads {threads}, "
        f"torch {rows[0]['torch'] if rows else '?'}; load average "
        f"{load[0][0]:.1f} at start, {load[1][0]:.1f} at end.",
        f"Peers: {peer_versions or 'none'}.",
        f"Data: `{cfg.data}` synthetic rows.",
        *([f"relu start = trained: every library loads the same weights (our relu SAE trained "
           f"{next(iter(weight_metas.values()))['steps']} steps on the same data distribution by "
           f"`sparse_weights.py`); L0 on the timed data: "
           + ", ".join(f"{float(m['l0_on_timing_data']):.0f} of {f:,}"
                       for f, m in weight_metas.items())
           + ". start = init: each library's own initialisation (about half the codes active)."]
          if weight_metas else []),
        "",
        markdown_table(rows), "",
    ]
    targets = target_lines(rows)
    if targets:
        lines += ["Targets:", *targets, ""]
    return "\n".join(lines)


def append_to_docs(section: str, path: Path = DOCS_FILE) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Benchmarks\n\nResults of the scripts in `benchmarks/`; each section "
                        "says how it was run.\n\n")
    with path.open("a") as fh:
        fh.write(section + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_arguments(parser, ThroughputConfig)
    parser.add_argument("--write", action="store_true", dest="_write",
                        help="append the result section to docs/benchmarks.md")
    args = parser.parse_args(argv)
    cfg = dataclass_from_namespace(ThroughputConfig, args)
    try:
        _validate(cfg)
        envs = {name: ensure_env(PEERS[name]) for name in cfg.peers}
        weights, weight_metas = trained_weights(cfg)
        jobs = build_jobs(cfg, envs, weights)
        load_start = os.getloadavg()
        results = run_rounds(jobs, cfg)
        load_end = os.getloadavg()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = summarize(jobs, results)
    section = report(cfg, rows, envs, (load_start, load_end), weight_metas)
    print(section)
    if cfg.json_out is not None:
        cfg.json_out.write_text(json.dumps(
            {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
             "rows": rows, "runs": results}, indent=2) + "\n")
    if args._write:
        append_to_docs(section)
        print(f"appended to {DOCS_FILE}", file=sys.stderr)
    return 0


def _validate(cfg: ThroughputConfig) -> None:
    unknown = sorted(set(cfg.peers) - set(PEERS))
    if unknown:
        raise UserError(f"--peers: unknown {unknown}; choose from {sorted(PEERS)}")
    bad_arch = sorted(set(cfg.archs) - set(TARGETS))
    if bad_arch:
        raise UserError(f"--archs: {bad_arch} not benchmarked; choose from {sorted(TARGETS)}")
    bad_start = sorted(set(cfg.starts) - set(STARTS))
    if bad_start or not cfg.starts:
        raise UserError(f"--starts: unknown {bad_start}; choose trained and/or init")
    if cfg.data not in ("sparse", "gaussian"):
        raise UserError(f"--data {cfg.data!r}: choose sparse or gaussian")
    if "trained" in cfg.starts and "relu" in cfg.archs and cfg.data != "sparse":
        raise UserError("--starts trained needs --data sparse (the weights were trained on it); "
                        "or use --starts init")
    bad_opt = sorted(set(cfg.sparsify_optimizers) - {"adam", "signum"})
    if bad_opt:
        raise UserError(f"--sparsify-optimizers: unknown {bad_opt}; choose adam and/or signum")
    for name in ("steps", "repeats", "data_batches", "batch_size", "d_in", "k"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if any(f < cfg.k for f in cfg.features):
        raise UserError(f"--features must all be >= --k ({cfg.k})")


if __name__ == "__main__":
    sys.exit(main())
