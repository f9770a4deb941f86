"""Which examples of a feature the explainer sees, and which are held out for scoring.

The explainer sees the first top examples, the first sample(s) of every activation interval
and a few random active examples. Scorers use only the rest: the remaining interval samples
and random examples (never a window whose peak row the explainer saw) as activating examples,
and the `zero` examples whose whole window stays at or below the marking threshold (0 by
default: the feature is 0 on every token) as non-activating ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from monosemantic.featuredb.reader import Example, FeatureCard


@dataclass
class SplitOptions:
    """How many examples of each kind the explainer sees (the rest are held out)."""

    explain_top: int = 10
    """Top examples shown to the explainer."""
    explain_per_interval: int = 1
    """Samples per activation interval shown to the explainer."""
    explain_random: int = 2
    """Random active examples shown to the explainer."""


@dataclass
class ExampleSplit:
    top: list[Example]
    """Shown: top examples."""
    intervals: list[tuple[int, float, float, list[Example]]]
    """Shown: (interval index, lo, hi, samples), highest interval first."""
    random: list[Example]
    """Shown: random active examples."""
    held_active: list[Example]
    """Held out, activating; `.interval` set for every one."""
    held_zero: list[Example]
    """Held out, zero activation on every token of the window."""

    def shown(self) -> list[Example]:
        return self.top + [ex for *_, exs in self.intervals for ex in exs] + self.random


def interval_of(activation: float, card: FeatureCard) -> int:
    """Index of the activation interval holding `activation` (the top one holds the max)."""
    for iv in card.intervals:
        if activation < iv.hi:
            return iv.idx
    return len(card.intervals) - 1 if card.intervals else 0


def split_examples(card: FeatureCard, opts: SplitOptions, mark_fraction: float = 0.0
                   ) -> ExampleSplit:
    """Shown and held-out examples; a token counts as active above `mark_fraction` x the
    feature's maximum (the prompts' marking rule)."""
    floor = mark_fraction * card.max_act
    top = card.top[:opts.explain_top]
    intervals = [(iv.idx, iv.lo, iv.hi, iv.examples[:opts.explain_per_interval])
                 for iv in reversed(card.intervals) if iv.examples]
    rand = card.random[:opts.explain_random]
    split = ExampleSplit(top, intervals, rand, [], [])
    seen = {ex.row for ex in split.shown()}
    candidates = ([ex for iv in card.intervals for ex in iv.examples[opts.explain_per_interval:]]
                  + card.random[opts.explain_random:])
    for ex in candidates:
        if ex.row in seen or max(ex.acts, default=0.0) <= floor:
            continue
        seen.add(ex.row)
        if ex.interval is None:
            ex.interval = interval_of(ex.activation, card)
        split.held_active.append(ex)
    split.held_zero = [ex for ex in card.zero if max(ex.acts, default=0.0) <= floor]
    return split


def pick_across_intervals(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """Up to `n` examples, one interval at a time from the highest down (random within an
    interval), so the pick spans activation levels rather than following their frequency."""
    groups: dict[int, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.interval or 0, []).append(ex)
    for group in groups.values():
        rng.shuffle(group)
    order = sorted(groups, reverse=True)
    picked: list[Example] = []
    while len(picked) < n and any(groups[i] for i in order):
        for i in order:
            if groups[i] and len(picked) < n:
                picked.append(groups[i].pop())
    return picked
