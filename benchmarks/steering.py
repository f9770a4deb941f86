"""Cost of interventions on the embedded default model with a trained SAE (default: the demo run).

1. Steering overhead: greedy generation tokens/s unsteered vs steered (clamp, and add), same
   prompt, same number of new tokens (EOS suppressed), runs interleaved so that load drifts hit
   both alike; the median of the repeats is reported. Target (issue 5): steered < 15% slower.
2. Attribution cost: one attribution pass (forward + backward, every active feature at every
   position) vs checking the top N (feature, position) pairs by ablation, one forward each, and
   batched (`ablation_effects`, one row per pair).

    .venv/bin/python benchmarks/steering.py [--run runs/demo/sae] [--new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from monosemantic.runs import RunDir
from monosemantic.steer import ablation_effects, attribute, steering
from monosemantic.steer.attribution import first_token, metric_per_row
from monosemantic.steer.compare import prompt_ids
from monosemantic.steer.edits import FeatureEdit

PROMPT = "def read_config(path):\n    \"\"\"Read the configuration file and return a dict.\"\"\"\n"
ATTR_PROMPT = ("import numpy as np\nimport pandas as pd\n\narr = np.zeros(3)\n"
               "df = pd.DataFrame(arr)\nimport numpy as")


@torch.no_grad()
def generate_seconds(lm, ids_1S, new_tokens: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one greedy generation. On a shared
    machine the CPU time is the steadier figure: other jobs stretch the wall time, not it."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = lm.model.generate(input_ids=ids_1S, attention_mask=torch.ones_like(ids_1S),
                            max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    assert out.shape[1] == ids_1S.shape[1] + new_tokens
    return time.perf_counter() - start, time.process_time() - cpu_start


def steering_overhead(lm, sae, hook, max_act_F, feature: int, new_tokens: int, repeats: int):
    ids_1S = prompt_ids(lm, PROMPT)
    generate_seconds(lm, ids_1S, 4)  # warm-up
    modes = {"unsteered": None, "clamp 5x": "clamp", "add 5x": "add"}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, mode in modes.items():
            if mode is None:
                times[name].append(generate_seconds(lm, ids_1S, new_tokens))
                continue
            with steering(lm, sae, hook, [FeatureEdit(feature, 5.0)], mode=mode,
                          max_act_F=max_act_F):
                times[name].append(generate_seconds(lm, ids_1S, new_tokens))
    base_wall = statistics.median(t[0] for t in times["unsteered"])
    base_cpu = statistics.median(t[1] for t in times["unsteered"])
    print(f"generation, {new_tokens} new tokens after a {ids_1S.shape[1]}-token prompt, "
          f"median of {repeats}:")
    for name, ts in times.items():
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        print(f"  {name:<10} {new_tokens / wall:7.2f} tokens/s wall "
              f"({100 * (wall / base_wall - 1):+.1f}%)"
              f"  {new_tokens / cpu:7.2f} tokens/CPU-s ({100 * (cpu / base_cpu - 1):+.1f}%)"
              f"  [wall runs {', '.join(f'{t[0]:.2f}' for t in ts)}]")


def attribution_cost(lm, sae, hook, top: int, repeats: int):
    ids_1S = prompt_ids(lm, ATTR_PROMPT)
    target, baseline = " np", " pd"
    result = attribute(lm, sae, hook, ATTR_PROMPT, target, baseline, top=top, ablate=False)
    metric = metric_per_row(first_token(lm, target, "target")[0],
                            first_token(lm, baseline, "baseline")[0])
    W_dec_FD = sae.W_dec_FD.detach()
    pos_N = torch.tensor([r.position for r in result.rows])
    deltas_ND = torch.stack([-r.activation * W_dec_FD[r.feature] for r in result.rows])

    def attribution_pass():
        attribute(lm, sae, hook, ATTR_PROMPT, target, baseline, top=top, ablate=False)

    def one_by_one():
        for n in range(len(pos_N)):
            ablation_effects(lm, hook, ids_1S, pos_N[n:n + 1], deltas_ND[n:n + 1], metric,
                             batch_size=1)

    def batched():
        ablation_effects(lm, hook, ids_1S, pos_N, deltas_ND, metric, batch_size=len(pos_N))

    jobs = {"attribution (1 fwd + 1 bwd, all features)": attribution_pass,
            f"{len(pos_N)} ablations, one forward each": one_by_one,
            f"{len(pos_N)} ablations, one batched forward": batched}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    attribution_pass()  # warm-up
    for _ in range(repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    print(f"attribution vs ablation on a {ids_1S.shape[1]}-token prompt "
          f"({result.n_active} active (feature, position) pairs), median of {repeats}:")
    base = statistics.median(times[next(iter(jobs))])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<45} {med:7.3f} s  ({med / base:.1f}x the attribution pass)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="run with sae/ and features.sqlite")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--feature", type=int, default=3982, help="feature steered (5x its max)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=50, help="(feature, position) pairs ablated")
    parser.add_argument("--skip", choices=["steering", "attribution"], default=None)
    args = parser.parse_args()
    print(f"cpu cores visible: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"load average: {os.getloadavg()[0]:.1f}")
    run = RunDir.open(args.run)
    lm, sae, hook = run.load(args.device)
    max_act_F = run.max_act_F()
    print(f"model {lm.spec} on {lm.device}, SAE {sae.cfg.architecture} F={sae.cfg.n_features} "
          f"at {hook}")
    if args.skip != "steering":
        steering_overhead(lm, sae, hook, max_act_F, args.feature, args.new_tokens, args.repeats)
    if args.skip != "attribution":
        attribution_cost(lm, sae, hook, args.top, args.repeats)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
