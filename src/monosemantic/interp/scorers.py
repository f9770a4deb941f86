"""The four scorers. Each takes a feature's card, its held-out examples and an explanation,
asks the judge, and returns a score with the details stored beside it.

- specificity_rubric: the paper's 0-3 rubric on held-out samples across activation
  intervals; score = mean rating; details hold the distribution per interval.
- detection: held-out activating + non-activating excerpts (no marks); the judge says which
  are activating; score = balanced accuracy (TPR + TNR) / 2.
- fuzzing: held-out activating excerpts, half marked on their real active tokens, half on as
  many random tokens; the judge says which are marked correctly; balanced accuracy.
- simulation: the judge predicts every token's activation 0-10; score = Pearson correlation
  with the real activations over all tokens of the simulated excerpts (0 when the prediction
  is constant, as the correlation is then undefined).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from monosemantic.featuredb.reader import Example, FeatureCard
from monosemantic.interp import prompts
from monosemantic.interp.backends.base import Message
from monosemantic.interp.cache import LLMClient
from monosemantic.interp.examples import ExampleSplit, pick_across_intervals
from monosemantic.interp.metrics import balanced_accuracy, pearson, rubric_summary
from monosemantic.interp.structured import ParseError, complete_json, require

T = TypeVar("T")

SCORER_NAMES = {"rubric": "specificity_rubric", "detection": "detection", "fuzzing": "fuzzing",
                "simulation": "simulation"}


@dataclass
class ScorerOptions:
    """How many held-out examples each scorer uses."""

    rubric_per_interval: int = 2
    """Held-out samples rated per activation interval (specificity rubric)."""
    detection_active: int = 6
    """Held-out activating excerpts for detection."""
    detection_zero: int = 6
    """Non-activating excerpts for detection (at most the database's zero examples)."""
    fuzzing_examples: int = 6
    """Held-out activating excerpts for fuzzing (half get their marks moved at random)."""
    simulation_examples: int = 2
    """Held-out excerpts whose activations the judge simulates (one call each)."""
    per_call: int = 6
    """Excerpts per judge call (rubric, detection, fuzzing)."""
    judge_max_tokens: int = 200
    """Most tokens a judge may answer with."""
    parse_retries: int = 2
    """Retries when a judge's answer is not the JSON asked for."""


@dataclass
class ScoreResult:
    scorer: str
    score: float
    details: dict[str, Any]


def _indices(key: str, n: int) -> Callable[[Any], set[int]]:
    def validate(obj: Any) -> set[int]:
        items = require(obj, {key: list})[key]
        if not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= n
                   for i in items):
            raise ParseError(f"{key!r} must list excerpt numbers from 1 to {n}")
        return {i - 1 for i in items}
    return validate


def _ratings(n: int) -> Callable[[Any], list[int]]:
    def validate(obj: Any) -> list[int]:
        items = require(obj, {"ratings": list})["ratings"]
        if len(items) != n or not all(isinstance(r, int) and not isinstance(r, bool)
                                      and 0 <= r <= 3 for r in items):
            raise ParseError(f"'ratings' must hold exactly {n} integers from 0 to 3")
        return items
    return validate


def _simulated(n_tokens: int) -> Callable[[Any], list[float]]:
    def validate(obj: Any) -> list[float]:
        pairs = require(obj, {"activations": list})["activations"]
        out = [0.0] * n_tokens
        for pair in pairs:
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in pair)
                    or not (0 <= pair[0] < n_tokens and pair[0] == int(pair[0]))
                    or not 0 <= pair[1] <= 10):
                raise ParseError("'activations' must be [token number, 0-10] pairs with token "
                                 f"numbers from 0 to {n_tokens - 1}")
            out[int(pair[0])] = float(pair[1])
        return out
    return validate


class Judge:
    """Calls the judge for one scorer, in chunks of `per_call` excerpts, and keeps usage."""

    def __init__(self, client: LLMClient, opts: ScorerOptions):
        self.client, self.opts = client, opts
        self.calls = self.attempts = self.input_tokens = self.output_tokens = 0

    def ask(self, messages: list[Message], validate: Callable[[Any], T]) -> T:
        got = complete_json(self.client, messages, validate,
                            max_tokens=self.opts.judge_max_tokens, retries=self.opts.parse_retries)
        self.calls += 1
        self.attempts += got.attempts
        self.input_tokens += sum(c.input_tokens for c in got.completions)
        self.output_tokens += sum(c.output_tokens for c in got.completions)
        return got.value

    def chunks(self, items: list[T]) -> list[list[T]]:
        step = max(1, self.opts.per_call)
        return [items[i:i + step] for i in range(0, len(items), step)]

    def usage(self) -> dict[str, int]:
        return {"calls": self.calls, "attempts": self.attempts,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


def rubric(judge: Judge, card: FeatureCard, split: ExampleSplit, explanation: str,
           rng: random.Random, popts: prompts.PromptOptions) -> ScoreResult | None:
    by_interval: dict[int, list[Example]] = {}
    for ex in split.held_active:
        by_interval.setdefault(ex.interval or 0, []).append(ex)
    items = []
    for idx in sorted(by_interval, reverse=True):
        group = by_interval[idx]
        rng.shuffle(group)
        items += group[:judge.opts.rubric_per_interval]
    if not items:
        return None
    ratings: list[tuple[int, int]] = []
    for chunk in judge.chunks(items):
        excerpts = [prompts.format_example(ex, card.max_act, popts.mark_fraction, levels=False)
                    for ex in chunk]
        got = judge.ask(prompts.rubric_messages(explanation, excerpts), _ratings(len(chunk)))
        ratings += [(ex.interval or 0, r) for ex, r in zip(chunk, got)]
    summary = rubric_summary(ratings, max(len(card.intervals), 1))
    return ScoreResult("specificity_rubric", summary["mean"], {**summary, **judge.usage()})


def detection(judge: Judge, card: FeatureCard, split: ExampleSplit, explanation: str,
              rng: random.Random, popts: prompts.PromptOptions) -> ScoreResult | None:
    active = pick_across_intervals(split.held_active, judge.opts.detection_active, rng)
    zero = split.held_zero[:judge.opts.detection_zero]
    if not active or not zero:
        return None
    items = [(ex, True) for ex in active] + [(ex, False) for ex in zero]
    rng.shuffle(items)
    predicted: list[bool] = []
    for chunk in judge.chunks(items):
        excerpts = [prompts.format_excerpt(ex.tokens, []) for ex, _ in chunk]
        chosen = judge.ask(prompts.detection_messages(explanation, excerpts),
                           _indices("active", len(chunk)))
        predicted += [i in chosen for i in range(len(chunk))]
    actual = [is_active for _, is_active in items]
    return ScoreResult("detection", balanced_accuracy(predicted, actual),
                       {"n_active": len(active), "n_zero": len(zero),
                        "predicted": predicted, "actual": actual, **judge.usage()})


def fuzz_marks(ex: Example, max_act: float, mark_fraction: float, rng: random.Random
               ) -> list[int]:
    """As many marks as the example has active tokens, on random inactive tokens where
    possible (so a fuzzed excerpt differs from the real one)."""
    real = prompts.marked_positions(ex.acts, max_act, mark_fraction)
    others = [i for i in range(len(ex.tokens)) if i not in set(real)]
    pool = others if len(others) >= len(real) else list(range(len(ex.tokens)))
    return sorted(rng.sample(pool, max(1, min(len(real), len(pool)))))


def fuzzing(judge: Judge, card: FeatureCard, split: ExampleSplit, explanation: str,
            rng: random.Random, popts: prompts.PromptOptions) -> ScoreResult | None:
    chosen = pick_across_intervals(split.held_active, judge.opts.fuzzing_examples, rng)
    if len(chosen) < 2:
        return None
    n_real = len(chosen) // 2
    items = []
    for j, ex in enumerate(chosen):
        correct = j < n_real
        marks = (prompts.marked_positions(ex.acts, card.max_act, popts.mark_fraction)
                 if correct else fuzz_marks(ex, card.max_act, popts.mark_fraction, rng))
        items.append((prompts.format_excerpt(ex.tokens, marks), correct))
    rng.shuffle(items)
    predicted: list[bool] = []
    for chunk in judge.chunks(items):
        picked = judge.ask(prompts.fuzzing_messages(explanation, [t for t, _ in chunk]),
                           _indices("correct", len(chunk)))
        predicted += [i in picked for i in range(len(chunk))]
    actual = [correct for _, correct in items]
    return ScoreResult("fuzzing", balanced_accuracy(predicted, actual),
                       {"n": len(items), "predicted": predicted, "actual": actual,
                        **judge.usage()})


def simulation(judge: Judge, card: FeatureCard, split: ExampleSplit, explanation: str,
               rng: random.Random, popts: prompts.PromptOptions) -> ScoreResult | None:
    chosen = pick_across_intervals(split.held_active, judge.opts.simulation_examples, rng)
    if not chosen:
        return None
    real: list[float] = []
    simulated: list[float] = []
    for ex in chosen:
        simulated += judge.ask(prompts.simulation_messages(explanation, ex.tokens),
                               _simulated(len(ex.tokens)))
        real += list(ex.acts)
    corr = pearson(simulated, real) if len(real) >= 2 else None
    return ScoreResult("simulation", 0.0 if corr is None else corr,
                       {"n_examples": len(chosen), "n_tokens": len(real),
                        "correlation_defined": corr is not None, **judge.usage()})


SCORERS = {"rubric": rubric, "detection": detection, "fuzzing": fuzzing,
           "simulation": simulation}
