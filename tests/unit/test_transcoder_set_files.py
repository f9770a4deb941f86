"""OUT/transcoders.json: the layout other commands read."""

from __future__ import annotations

import json

import pytest

from monosemantic.errors import UserError
from monosemantic.transcoders.report import read_set_file, write_set_file


def test_the_set_file_lists_layers_in_numeric_order_relative_to_out(tmp_path):
    write_set_file(tmp_path, "gemma-3-270m", [10, 2, 0])
    data = json.loads((tmp_path / "transcoders.json").read_text())
    assert data == {"version": 1, "model": "gemma-3-270m",
                    "layers": {"0": "layer_00", "2": "layer_02", "10": "layer_10"}}
    assert list(data["layers"]) == ["0", "2", "10"]
    assert read_set_file(tmp_path) == {0: tmp_path / "layer_00", 2: tmp_path / "layer_02",
                                       10: tmp_path / "layer_10"}


def test_a_missing_set_file_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match="monosemantic transcoders OUT --store HARVEST"):
        read_set_file(tmp_path)
