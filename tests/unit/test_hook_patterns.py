"""Hook patterns (`blocks.*.hook_mlp_in`, `blocks.0-5.hook_mlp_out`) and layer lists."""

from __future__ import annotations

import pytest

from monosemantic.errors import UserError
from monosemantic.models.hook_points import expand_hook_patterns, is_hook_pattern, parse_layers


def test_a_wildcard_expands_to_every_layer_in_forward_order():
    assert expand_hook_patterns(["blocks.*.hook_mlp_in"], 3) == [
        "blocks.0.hook_mlp_in", "blocks.1.hook_mlp_in", "blocks.2.hook_mlp_in"]


def test_ranges_lists_and_plain_names_mix_and_repeats_are_kept_once():
    names = expand_hook_patterns(["blocks.1-2.hook_mlp_out", "blocks.2,0.hook_mlp_in",
                                  "blocks.1.hook_mlp_out", "model.layers.0.mlp"], 4)
    assert names == ["blocks.1.hook_mlp_out", "blocks.2.hook_mlp_out", "blocks.0.hook_mlp_in",
                     "blocks.2.hook_mlp_in", "model.layers.0.mlp"]


def test_a_wildcard_in_the_suffix_stays_within_the_layer():
    assert expand_hook_patterns(["blocks.1.hook_mlp_*"], 3) == [
        "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"]


def test_plain_names_are_not_patterns():
    assert not is_hook_pattern("blocks.12.hook_mlp_in")
    assert not is_hook_pattern("model.layers.3.mlp")
    assert is_hook_pattern("blocks.0-5.hook_mlp_out") and is_hook_pattern("blocks.*.hook_mlp_in")


def test_a_pattern_matching_nothing_is_a_user_error():
    with pytest.raises(UserError, match=r"'blocks\.\*\.hook_mlp_inn' matches no hook point"):
        expand_hook_patterns(["blocks.*.hook_mlp_inn"], 3)
    with pytest.raises(UserError, match="layer 5 does not exist.*layers 0..2"):
        expand_hook_patterns(["blocks.0-5.hook_mlp_in"], 3)


def test_layer_lists():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("0-1, 3", 4) == [0, 1, 3]
    for bad in ("2-1", "x", "4"):
        with pytest.raises(UserError):
            parse_layers(bad, 4)
