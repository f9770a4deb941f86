"""`monosemantic plan-memory`: print the memory/communication plan of one configuration, or the
grid over dictionary sizes and widths (`--table`), optionally as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.scale.memory import (
    GB,
    MAX_WORLD,
    MemoryPlan,
    PlanMemoryConfig,
    count,
    min_devices,
    plan_memory,
)

GRID_FEATURES = {"1M": 2**20, "4M": 2**22, "16M": 2**24, "34M": 2**25}
"""The paper's dictionary sizes (1,048,576 / 4,194,304 / 33,554,432) plus 16M between them."""
GRID_WIDTHS = (640, 2304, 4096, 8192)


def gb(n_bytes: int) -> str:
    return f"{n_bytes / GB:,.2f}"


def plan_record(plan: MemoryPlan, fewest: int | None) -> dict[str, Any]:
    """JSON-ready plan: every field in bytes, plus the totals and the fewest devices."""
    return {**asdict(plan), "total": plan.total, "sent": plan.sent, "fits": plan.fits,
            "min_devices": fewest}


def describe(cfg: PlanMemoryConfig, plan: MemoryPlan, fewest: int | None) -> list[str]:
    """The lines of one plan."""
    arch = f"topk k={cfg.k}" if cfg.architecture == "topk" else cfg.architecture
    verdict = "fits" if plan.fits else "does NOT fit"
    rows = [
        ("parameters", plan.params, cfg.param_dtype),
        ("gradients", plan.grads, cfg.param_dtype),
        ("Adam m and v", plan.adam, cfg.state_dtype),
        ("activations", plan.activations, f"{cfg.act_dtype}, one step"),
    ]
    sent = [
        ("gradient all-reduce (data axis)", plan.grad_allreduce),
        ("decode all-reduce (feature axis)", plan.decode_allreduce),
        ("top-k candidate all-gather (feature axis)", plan.candidate_allgather),
    ]
    lines = [
        f"d {count(cfg.d_in, 'd_in'):,}, F {count(cfg.n_features, 'n_features'):,}, {arch}, "
        f"batch {count(cfg.batch_size, 'batch_size'):,} tokens/step, {cfg.world} device"
        f"{'' if cfg.world == 1 else 's'} "
        f"(mode {cfg.mode}: data {plan.data_parallel} x features {plan.feature_parallel})",
        f"per rank: {plan.local_batch:,} tokens, {plan.local_features:,} features, "
        f"{plan.n_params:,} parameters",
        *(f"  {name:<14}{gb(size):>12} GB  ({note})" for name, size, note in rows),
        f"  {'total':<14}{gb(plan.total):>12} GB  of {gb(plan.budget)} GB usable "
        f"({cfg.device_gb:g} GB x {cfg.headroom:g}): {verdict}",
        "sent per rank per step (ring collectives):",
        *(f"  {name:<42}{gb(size):>10} GB" for name, size in sent),
        f"  {'total':<42}{gb(plan.sent):>10} GB",
        f"fewest {cfg.device_gb:g} GB devices that fit (mode {cfg.mode}): "
        + (f"{fewest:,}" if fewest else none_fit(cfg)),
    ]
    return lines


def none_fit(cfg: PlanMemoryConfig) -> str:
    if cfg.mode == "data":
        return "none (mode data keeps the whole SAE on every device)"
    return f"none up to {MAX_WORLD:,} devices"


def grid(cfg: PlanMemoryConfig) -> list[dict[str, Any]]:
    """One record per (F, d) of the grid, at `cfg`'s world, mode and everything else."""
    records = []
    for label, n_features in GRID_FEATURES.items():
        for d in GRID_WIDTHS:
            cell = PlanMemoryConfig(**{**vars(cfg), "n_features": n_features, "d_in": d})
            record = plan_record(plan_memory(cell), min_devices(cell))
            records.append({"features": label, "n_features": n_features, "d_in": d, **record})
    return records


def format_grid(cfg: PlanMemoryConfig, records: list[dict[str, Any]]) -> list[str]:
    """The grid as an aligned table (GB per rank at `cfg.world`, fewest devices that fit)."""
    arch = f"topk k={cfg.k}" if cfg.architecture == "topk" else cfg.architecture
    head = (f"{arch}, batch {count(cfg.batch_size, 'batch_size'):,}, params "
            f"{cfg.param_dtype}, Adam {cfg.state_dtype}, activations {cfg.act_dtype}; "
            f"{cfg.world} devices, mode {cfg.mode}; usable {cfg.device_gb:g} GB x "
            f"{cfg.headroom:g} per device")
    lines = [head, f"{'F':>4} {'d':>5} {'GB/rank':>10} {'fits':>5} {'sent GB/step':>13} "
             f"{'fewest devices':>15}"]
    for r in records:
        fewest = f"{r['min_devices']:,}" if r["min_devices"] else "none"
        lines.append(f"{r['features']:>4} {r['d_in']:>5} {gb(r['total']):>10} "
                     f"{'yes' if r['fits'] else 'no':>5} {gb(r['sent']):>13} {fewest:>15}")
    return lines


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def run_plan_memory(cfg: PlanMemoryConfig) -> dict[str, Any]:
    """Print the plan of `cfg` (or the grid with `cfg.table`); returns what --json-out writes."""
    if cfg.table:
        records = grid(cfg)
        say("\n".join(format_grid(cfg, records)))
        payload: dict[str, Any] = {"config": to_dict(cfg), "grid": records}
    else:
        plan = plan_memory(cfg)
        fewest = min_devices(cfg)
        say("\n".join(describe(cfg, plan, fewest)))
        payload = {"config": to_dict(cfg), "plan": plan_record(plan, fewest)}
    if cfg.json_out is not None:
        write_json(cfg.json_out, payload)
        say(f"wrote {cfg.json_out}")
    return payload
