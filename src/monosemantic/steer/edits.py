"""Feature edits: `123=10x` (10 × the feature's max activation) or `123=4.5` (raw units).

`resolve_edits` turns a list of edits into raw code values, checking ids, units and the size of
multipliers, so that every steering mode reads the same validated numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from monosemantic.errors import UserError

Unit = Literal["max", "raw"]
UNITS: tuple[str, ...] = ("max", "raw")

DEFAULT_MAX_MULTIPLIER = 100.0
"""Scaling Monosemanticity steered at -10..10 × max; at ±100 × the model degenerates."""

_EDIT_RE = re.compile(r"^\s*(\d+)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([xX]?)\s*$")


@dataclass(frozen=True)
class FeatureEdit:
    """Set (clamp mode) or add (add mode) feature `feature` at `value`, in multiples of the
    feature's max activation (`unit="max"`) or in raw code units (`unit="raw"`)."""

    feature: int
    value: float
    unit: Unit = "max"


def parse_edit(text: str) -> FeatureEdit:
    """`"123=10x"` -> FeatureEdit(123, 10.0, "max");
    `"123=-4.5"` -> FeatureEdit(123, -4.5, "raw")."""
    match = _EDIT_RE.match(str(text))
    if match is None:
        raise UserError(f"cannot read feature edit {text!r}: write FEATURE=VALUEx for multiples "
                        "of the feature's max activation (123=10x, 7=-3x) or FEATURE=VALUE for "
                        "raw units (123=4.5)")
    feature, value, suffix = match.groups()
    return FeatureEdit(int(feature), float(value), "max" if suffix else "raw")


def format_edit(edit: FeatureEdit) -> str:
    """Inverse of `parse_edit` (`123=10x`, `123=4.5`)."""
    return f"{edit.feature}={edit.value:g}{'x' if edit.unit == 'max' else ''}"


def resolve_edits(edits: list[FeatureEdit], n_features: int, max_act_F: Tensor | None = None,
                  max_multiplier: float = DEFAULT_MAX_MULTIPLIER) -> tuple[Tensor, Tensor]:
    """(feature ids [E] int64, raw values [E] float32) of `edits`, after checking them.

    Rejects (UserError): no edits, ids outside [0, n_features), a feature edited twice, unknown
    units, non-finite values, `max` units without `max_act_F` or for a feature that never fired,
    and multipliers whose magnitude exceeds `max_multiplier` (raw values are checked against it
    too, as a multiple of the max, when `max_act_F` is known).
    """
    if not edits:
        raise UserError("no feature edit given: name at least one, e.g. 123=10x")
    seen: set[int] = set()
    ids: list[int] = []
    values: list[float] = []
    for edit in edits:
        if not isinstance(edit, FeatureEdit):
            raise UserError(f"expected a FeatureEdit, got {edit!r} (use parse_edit('123=10x'))")
        i = int(edit.feature)
        if not 0 <= i < n_features:
            raise UserError(f"feature {i} does not exist: this SAE has features 0 to "
                            f"{n_features - 1}")
        if i in seen:
            raise UserError(f"feature {i} is edited twice: give each feature one value")
        seen.add(i)
        if edit.unit not in UNITS:
            raise UserError(f"unknown unit {edit.unit!r} for feature {i}: use 'max' (multiples "
                            "of the feature's max activation) or 'raw'")
        if not math.isfinite(edit.value):
            raise UserError(f"the value for feature {i} must be a finite number, got {edit.value}")
        ids.append(i)
        values.append(_raw_value(edit, max_act_F, max_multiplier))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(values, dtype=torch.float32)


def _raw_value(edit: FeatureEdit, max_act_F: Tensor | None, max_multiplier: float) -> float:
    i = edit.feature
    max_act = None if max_act_F is None else float(max_act_F[i])
    if edit.unit == "raw":
        if max_act and abs(edit.value) > max_multiplier * max_act:
            raise UserError(f"raw value {edit.value:g} for feature {i} is "
                            f"{abs(edit.value) / max_act:.0f}× its max activation ({max_act:.3g}), "
                            f"beyond the limit of {max_multiplier:g}× (raise max_multiplier to "
                            "allow it; the model degenerates there)")
        return float(edit.value)
    if abs(edit.value) > max_multiplier:
        raise UserError(f"multiplier {edit.value:g}x for feature {i} exceeds the limit of "
                        f"{max_multiplier:g}x (the paper steered at -10x..10x; at ±100x the model "
                        "degenerates); raise max_multiplier to allow it")
    if max_act is None:
        raise UserError(f"feature {i} is given in multiples of its max activation "
                        f"({edit.value:g}x) but no max activations were given: build the "
                        "feature database (`monosemantic analyze RUN`) or give a raw value "
                        "(123=4.5)")
    if not max_act > 0:
        raise UserError(f"feature {i} never fired in the analysed data (max activation "
                        f"{max_act:g}), so {edit.value:g}x means nothing: give a raw value")
    return float(edit.value) * max_act
