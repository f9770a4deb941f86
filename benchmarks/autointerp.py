"""Autointerp on random SAE features vs random MLP neurons: throughput, tokens per feature, and
the distributions of detection accuracy and of specificity-rubric scores.

    .venv/bin/python benchmarks/autointerp.py --features-db runs/demo \
        --neurons-db runs/demo/neurons --n 100               # the issue's ask
    .venv/bin/python benchmarks/autointerp.py ... --n 6 --scorers rubric detection  # a 2-core CPU
    .venv/bin/python benchmarks/autointerp.py ... --llm anthropic --model claude-3-5-haiku-latest

The databases are copied into --work (default /tmp/autointerp_bench) and results are written
there, so the run's own features.sqlite is not modified. The neuron database comes from
`monosemantic neurons RUN`. Features and neurons are sampled among those that fired (seed
--seed); both go through exactly the same explain + score pipeline and options. The local
model is loaded once and shared by both. Prints a Markdown report and writes report.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from monosemantic.interp.explain import ExplainConfig, explain
from monosemantic.interp.score import ScoreConfig, score
from monosemantic.runs import RunDir, feature_db_path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--features-db", required=True, help="SAE run dir or features.sqlite")
    p.add_argument("--neurons-db", required=True, help="neuron dir or features.sqlite")
    p.add_argument("--n", type=int, default=100, help="random features and random neurons")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scorers", nargs="+", default=["rubric", "detection"])
    p.add_argument("--llm", default="local")
    p.add_argument("--model", default=None)
    p.add_argument("--base-url", default=None)
    p.add_argument("--mark-fraction", type=float, default=0.2,
                   help="marking / activity threshold as a fraction of each unit's max "
                        "(same for both; neurons are dense, see docs/autointerp.md)")
    p.add_argument("--few-shot", action="store_true", help="explainer sees two worked examples")
    p.add_argument("--explain-top", type=int, default=5)
    p.add_argument("--explain-random", type=int, default=1)
    p.add_argument("--rubric-per-interval", type=int, default=1)
    p.add_argument("--detection-active", type=int, default=4)
    p.add_argument("--detection-zero", type=int, default=4)
    p.add_argument("--per-call", type=int, default=8)
    p.add_argument("--parse-retries", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=150, help="explainer answer limit")
    p.add_argument("--judge-max-tokens", type=int, default=200, help="judge answer limit")
    p.add_argument("--work", default="/tmp/autointerp_bench")
    return p.parse_args()


def run_one(kind: str, src: str, args, lm) -> dict:
    work = Path(args.work) / kind
    work.mkdir(parents=True, exist_ok=True)
    copy = RunDir(work).db_path
    if not copy.exists():
        shutil.copyfile(feature_db_path(src), copy)
    llm = {"llm": args.llm, "model": args.model, "base_url": args.base_url,
           "cache": str(Path(args.work) / RunDir.LLM_CACHE)}
    ecfg = ExplainConfig(run=work, sample=args.n, seed=args.seed,
                         mark_fraction=args.mark_fraction, explain_top=args.explain_top,
                         explain_random=args.explain_random, parse_retries=args.parse_retries,
                         max_tokens=args.max_tokens, few_shot=args.few_shot,
                         **llm)
    t0 = time.perf_counter()
    ex = explain(ecfg, lm=lm)
    t1 = time.perf_counter()
    scfg = ScoreConfig(run=work, scorers=tuple(args.scorers),
                       rubric_per_interval=args.rubric_per_interval,
                       detection_active=args.detection_active,
                       detection_zero=args.detection_zero, per_call=args.per_call,
                       parse_retries=args.parse_retries,
                       judge_max_tokens=args.judge_max_tokens, **llm)
    sc = score(scfg, lm=lm)
    t2 = time.perf_counter()
    n = ex["explained"]
    tokens = (ex["usage"]["input_tokens"] + ex["usage"]["output_tokens"]
              + sc["usage"]["input_tokens"] + sc["usage"]["output_tokens"])
    return {"kind": kind, "sampled": ex["features"], "explained": n,
            "explain_failures": len(ex["failures"]), "explain_s": t1 - t0, "score_s": t2 - t1,
            "per_minute": n / ((t2 - t0) / 60) if n else 0.0,
            "tokens_per_feature": tokens / n if n else None,
            "calls": ex["usage"]["calls"] + sc["usage"]["calls"],
            "cached_calls": ex["usage"]["cached_calls"] + sc["usage"]["cached_calls"],
            "explain_usage": ex["usage"], "score_usage": sc["usage"], "scores": sc["scores"]}


def fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


def report(rows: list[dict], args) -> str:
    lines = [(f"backend: {args.llm}/{args.model or 'default'}; n = {args.n} per kind; "
             f"mark fraction {args.mark_fraction}"), "",
             ("| units | explained | per min | tokens / unit | detection mean | median | "
             "quartiles | rubric mean | rubric 0/1/2/3 |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        det, rub = r["scores"].get("detection"), r["scores"].get("rubric")
        lines.append(
            f"| {r['kind']} | {r['explained']}/{r['sampled']} | {fmt(r['per_minute'])} | "
            f"{fmt(r['tokens_per_feature'], 0)} | {fmt(det and det['mean'])} | "
            f"{fmt(det and det['median'])} | "
            f"{'–' if not det else ', '.join(fmt(q) for q in det['quartiles'])} | "
            f"{fmt(rub and rub['mean'])} | "
            f"{'–' if not rub else '/'.join(map(str, rub['counts']))} |")
    for r in rows:
        got = ", ".join(f"{k} {v['n']}" for k, v in r["scores"].items()) or "none"
        lines.append(f"\n{r['kind']}: {r['calls']} LLM calls; explanations that parsed "
                     f"{r['explained']}/{r['sampled']}; scores that parsed: {got}")
    for r in rows:
        rub = r["scores"].get("rubric")
        if rub:
            means = ", ".join(fmt(m) for m in rub["per_interval_mean"])
            lines.append(f"\n{r['kind']}: mean rubric score per activation interval "
                         f"(lowest first): {means}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    lm = None
    if args.llm == "local":
        from monosemantic.models import load_model

        lm = load_model(args.model or "gemma-3-270m")
    rows = [run_one("features", args.features_db, args, lm),
            run_one("neurons", args.neurons_db, args, lm)]
    text = report(rows, args)
    print(text)
    out = Path(args.work) / "report.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
