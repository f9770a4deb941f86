"""Interventions with a trained SAE: steering (clamp / add) and attribution checked by ablation.

    run = RunDir.open("runs/demo")                  # monosemantic.runs.RunDir
    lm, sae, hook = run.load()
    max_act_F = run.max_act_F()                     # from features.sqlite (None without it)
    with steering(lm, sae, hook, [parse_edit("123=10x")], max_act_F=max_act_F):
        lm.model.generate(...)
    steer_compare(lm, sae, hook, "def f(x):", [parse_edit("123=10x")], max_act_F=max_act_F)
    attribute(lm, sae, hook, "import numpy as", " np", " pd")

A transcoder reads `hook` and writes `run.hook_out`: pass `hook_out=run.hook_out` to `steering`,
`steer_compare` and `attribute` (codes from `hook`, edits and gradients at `hook_out`).
"""

from monosemantic.steer.attribution import (
    AttributionResult,
    AttributionRow,
    PairCorrelations,
    ablation_effects,
    attribute,
)
from monosemantic.steer.compare import NEUTRAL_TEXT, SteerResult, steer_compare
from monosemantic.steer.edits import FeatureEdit, format_edit, parse_edit, resolve_edits
from monosemantic.steer.steering import steering

__all__ = [
    "NEUTRAL_TEXT",
    "AttributionResult",
    "AttributionRow",
    "FeatureEdit",
    "PairCorrelations",
    "SteerResult",
    "ablation_effects",
    "attribute",
    "format_edit",
    "parse_edit",
    "resolve_edits",
    "steer_compare",
    "steering",
]
