"""`monosemantic score RUN`: score the stored explanations with an LLM judge (specificity
rubric, detection, fuzzing, simulation) on examples the explainer did not see; each score is
stored in RUN/features.sqlite `scores`, and a summary of the distributions is printed."""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.featuredb.reader import FeatureCard, FeatureDB
from monosemantic.fsutil import atomic_write_text
from monosemantic.interp.backends import LLMOptions
from monosemantic.interp.cache import LLMClient
from monosemantic.interp.common import CardReader, open_client, run_parallel
from monosemantic.interp.examples import SplitOptions, split_examples
from monosemantic.interp.prompts import PROMPT_VERSION, PromptOptions
from monosemantic.interp.results import ResultsDB
from monosemantic.interp.scorers import SCORER_NAMES, SCORERS, Judge, ScorerOptions
from monosemantic.interp.structured import StructuredError
from monosemantic.runs import feature_db_path

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel


@dataclass(kw_only=True)
class ScoreConfig(LLMOptions, ScorerOptions):
    """Score stored explanations with an LLM judge; scores go to RUN/features.sqlite."""

    run: Path = field(metadata={"positional": True})
    """Run directory holding features.sqlite, or its sae/ folder, or the database file
    itself."""
    scorers: tuple[str, ...] = ("rubric", "detection", "fuzzing", "simulation")
    """Scorers to run: rubric (the 0-3 specificity rubric), detection, fuzzing, simulation."""
    features: tuple[int, ...] = ()
    """Score only these features (default: every feature with an explanation)."""
    explainer: str | None = None
    """Score explanations by this explainer (backend/model/prompt version); default: each
    feature's latest explanation."""
    seed: int = 0
    """Seed of the choice and order of held-out examples."""
    redo: bool = False
    """Score again explanations this judge already scored."""
    summary: Path | None = None
    """Also write the summary (distributions per scorer) as JSON to this file."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown or not self.scorers:
            raise UserError(f"unknown scorer(s) {unknown}: choose from {sorted(SCORERS)}")


def _split_options(details: dict[str, Any]) -> tuple[SplitOptions, PromptOptions]:
    """The split and marking the explainer used (so held-out examples really were held out)."""
    return (SplitOptions(**details.get("split", {})),
            PromptOptions(**details.get("prompt", {})))


def score_feature(client: LLMClient, card: FeatureCard, explanation: dict[str, Any],
                  cfg: ScoreConfig, out: ResultsDB, skip: dict[str, set[int]]
                  ) -> dict[str, float | str]:
    """Run the scorers on one feature and store their scores; per scorer the score, or
    "unparsed" (no valid judge answer), "too_few_examples" or "done_before"."""
    split_opts, prompt_opts = _split_options(explanation["details"])
    split = split_examples(card, split_opts, prompt_opts.mark_fraction)
    judge_name = f"{client.backend.name}/{client.backend.model}"
    results: dict[str, float | str] = {}
    for name in cfg.scorers:
        if explanation["id"] in skip[name]:
            results[name] = "done_before"
            continue
        judge = Judge(client, cfg)
        rng = random.Random(f"{cfg.seed}/{card.id}/{name}")
        try:
            got = SCORERS[name](judge, card, split, explanation["text"], rng, prompt_opts)
        except StructuredError as err:
            results[name] = "unparsed"
            say(f"  feature {card.id} {name}: judge gave no usable answer ({err})")
            continue
        if got is None:
            results[name] = "too_few_examples"
            continue
        details = {**got.details, "judge": judge_name, "explainer": explanation["explainer"],
                   "prompt_version": PROMPT_VERSION}
        out.add_score(card.id, explanation["id"], got.scorer, got.score, details)
        results[name] = got.score
    return results


def summarize(out: ResultsDB, features: set[int], judge: str) -> dict[str, Any]:
    """Distribution of every scorer's scores over `features` (latest score per feature)."""
    summary: dict[str, Any] = {}
    for name, stored in SCORER_NAMES.items():
        latest: dict[int, dict[str, Any]] = {}
        for row in out.scores(stored):
            if row["feature"] in features and row["details"].get("judge") == judge:
                latest[row["feature"]] = row
        if not latest:
            continue
        values = [r["score"] for r in latest.values()]
        entry: dict[str, Any] = {"n": len(values), "mean": statistics.fmean(values),
                                 "median": statistics.median(values),
                                 "quartiles": (statistics.quantiles(values, n=4)
                                               if len(values) > 1 else values * 3)}
        if name == "rubric":
            entry["counts"] = [sum(r["details"]["counts"][v] for r in latest.values())
                               for v in range(4)]
            entry["per_interval_mean"] = _interval_means(list(latest.values()))
        summary[name] = entry
    return summary


def _interval_means(rows: list[dict[str, Any]]) -> list[float | None]:
    n = max(len(r["details"]["per_interval"]) for r in rows)
    means = []
    for idx in range(n):
        total = count = 0
        for r in rows:
            iv = r["details"]["per_interval"][idx] if idx < len(r["details"]["per_interval"]) \
                else None
            if iv:
                total += sum(v * c for v, c in enumerate(iv["counts"]))
                count += sum(iv["counts"])
        means.append(total / count if count else None)
    return means


def score(cfg: ScoreConfig, lm: LoadedModel | None = None) -> dict[str, Any]:
    """Score the chosen explanations; returns the summary."""
    path = feature_db_path(cfg.run)
    with FeatureDB(path) as db, ResultsDB(path) as out:
        explanations = out.explanations(cfg.explainer)
        features = list(cfg.features) or sorted(explanations)
        missing = [f for f in features if f not in explanations]
        if missing or not features:
            raise UserError(f"no explanation to score for feature(s) {missing[:10]}: run "
                            "`monosemantic explain RUN` first" if missing else
                            "no explanations in the database: run `monosemantic explain` first")
        client = open_client(cfg, path, lm=lm)
        judge = f"{client.backend.name}/{client.backend.model}"
        skip = {name: set() if cfg.redo else out.scored(SCORER_NAMES[name], judge)
                for name in cfg.scorers}
        read = CardReader(db)
        start = time.perf_counter()
        results = run_parallel(
            lambda f: score_feature(client, read(f), explanations[f], cfg, out, skip),
            features, cfg.concurrency, "score")
        seconds = time.perf_counter() - start
        outcomes = {name: {kind: sum(r.get(name) == kind for r in results)
                           for kind in ("unparsed", "too_few_examples", "done_before")}
                    for name in cfg.scorers}
        summary = {"judge": judge, "features": len(features), "seconds": seconds,
                   "usage": asdict(client.usage), "not_scored": outcomes,
                   "scores": summarize(out, set(features), judge)}
    say(f"scored {len(features)} features with {judge} in {seconds:.1f} s; "
        f"{client.usage.summary()}")
    for name, entry in summary["scores"].items():
        say(f"  {name:<10} n={entry['n']:<4} mean {entry['mean']:.3f}  median "
            f"{entry['median']:.3f}")
    for name, counts in outcomes.items():
        if any(counts.values()):
            say(f"  {name:<10} not scored: " + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                       for k, v in counts.items() if v))
    if cfg.summary is not None:
        atomic_write_text(Path(cfg.summary), json.dumps(summary, indent=2) + "\n")
    return summary
