"""Interventions with a trained SAE: steering (clamp / add) and attribution checked by ablation.

    lm, sae, hook, max_act_F = load_steer_context("runs/demo/sae")
    with steering(lm, sae, hook, [parse_edit("123=10x")], max_act_F=max_act_F):
        lm.model.generate(...)
    steer_compare(lm, sae, hook, "def f(x):", [parse_edit("123=10x")], max_act_F=max_act_F)
    attribute(lm, sae, hook, "import numpy as", " np", " pd")
"""

from monosemantic.steer.attribution import (
    AttributionResult,
    AttributionRow,
    PairCorrelations,
    ablation_effects,
    attribute,
)
from monosemantic.steer.compare import NEUTRAL_TEXT, SteerResult, steer_compare
from monosemantic.steer.context import load_steer_context
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
    "load_steer_context",
    "parse_edit",
    "resolve_edits",
    "steer_compare",
    "steering",
]
