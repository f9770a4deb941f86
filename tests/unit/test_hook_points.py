"""Hook point names -> module paths, without running a model."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from torch import nn

from monosemantic.errors import UserError
from monosemantic.models.families import FAMILIES, MODEL_TYPES, detect_family, linear_in_features
from monosemantic.models.hook_points import (
    HookPoint,
    all_canonical_names,
    canonical_point,
    raw_module_layer,
    unknown_hook_error,
)
from monosemantic.models.hooks_cli import format_points


def _point(family: str, name: str, blocks: str = "model.layers") -> HookPoint | None:
    return canonical_point(
        FAMILIES[family], blocks, n_layers=18, d_model=640, d_mlp=2048, name=name
    )


@pytest.mark.parametrize(
    ("family", "name", "module", "kind", "width"),
    [
        ("gemma3", "blocks.6.hook_resid_post", "model.layers.6", "resid_post", 640),
        ("gemma3", "blocks.6.hook_resid_pre", "model.layers.6", "resid_pre", 640),
        (
            "gemma3",
            "blocks.6.hook_mlp_out",
            "model.layers.6.post_feedforward_layernorm",
            "mlp_out",
            640,
        ),
        (
            "gemma3",
            "blocks.6.hook_attn_out",
            "model.layers.6.post_attention_layernorm",
            "attn_out",
            640,
        ),
        ("gemma3", "blocks.6.mlp.hook_post", "model.layers.6.mlp.down_proj", "mlp_post", 2048),
        ("llama", "blocks.0.hook_attn_out", "model.layers.0.self_attn", "attn_out", 640),
        ("llama", "blocks.17.hook_mlp_out", "model.layers.17.mlp", "mlp_out", 640),
    ],
)
def test_canonical_names_map_to_modules(family, name, module, kind, width):
    point = _point(family, name)
    assert (point.name, point.module_path, point.kind, point.width) == (name, module, kind, width)
    assert point.layer == int(name.split(".")[1])


def test_gpt2_and_neox_paths():
    assert (
        _point("gpt2", "blocks.2.mlp.hook_post", "transformer.h").module_path
        == "transformer.h.2.mlp.c_proj"
    )
    neox = _point("gpt_neox", "blocks.1.hook_mlp_out", "gpt_neox.layers")
    assert neox.module_path == "gpt_neox.layers.1.post_mlp_dropout"


def test_reads_input_only_for_resid_pre_mlp_in_and_mlp_post():
    reads = {p.kind: p.reads_input for p in (_point("llama", n) for n in all_canonical_names(1))}
    assert reads == {
        "resid_pre": True,
        "attn_out": False,
        "mlp_in": True,
        "mlp_post": True,
        "mlp_out": False,
        "resid_post": False,
    }


def test_hook_point_is_frozen():
    point = _point("llama", "blocks.0.hook_resid_post")
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.layer = 3


def test_non_canonical_and_out_of_range():
    assert _point("llama", "model.layers.3.mlp") is None
    assert _point("llama", "blocks.3.hook_resid_middle") is None
    with pytest.raises(UserError, match="layers 0..17"):
        _point("llama", "blocks.18.hook_resid_post")


def test_all_names_in_forward_order():
    names = all_canonical_names(2)
    assert len(names) == 12
    assert names[:6] == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_in",
        "blocks.0.mlp.hook_post",
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_post",
    ]


def test_raw_module_layer():
    assert raw_module_layer("model.layers", "model.layers.12.mlp") == 12
    assert raw_module_layer("model.layers", "model.layers.3") == 3
    assert raw_module_layer("model.layers", "model.norm") == -1
    assert raw_module_layer("model.layers", "model.layers_extra.3") == -1


def test_unknown_error_lists_valid_names():
    model = nn.Sequential(nn.Linear(2, 2))
    err = unknown_hook_error("blocks.0.hook_foo", 4, model, "model.layers")
    assert isinstance(err, UserError)
    text = str(err)
    for suffix in (
        "hook_resid_pre",
        "hook_resid_post",
        "hook_attn_out",
        "hook_mlp_out",
        "mlp.hook_post",
    ):
        assert suffix in text
    assert "0..3" in text


def test_detect_family():
    for model_type, family in [
        ("gemma3_text", "gemma3"),
        ("gemma2", "gemma3"),
        ("mistral", "llama"),
        ("qwen2", "llama"),
        ("gpt2", "gpt2"),
        ("gpt_neox", "gpt_neox"),
    ]:
        fake = SimpleNamespace(config=SimpleNamespace(model_type=model_type))
        assert detect_family(fake).name == family
    assert set(MODEL_TYPES.values()) == set(FAMILIES)
    with pytest.raises(UserError, match="not supported"):
        detect_family(SimpleNamespace(config=SimpleNamespace(model_type="t5")))


def test_linear_in_features():
    assert linear_in_features(nn.Linear(7, 3)) == 7
    with pytest.raises(TypeError):
        linear_in_features(nn.ReLU())


def test_format_points():
    points = [_point("gemma3", n) for n in ("blocks.6.hook_resid_pre", "blocks.6.mlp.hook_post")]
    lines = format_points(points).splitlines()
    assert len(lines) == 3
    assert "640" in lines[1] and "input of model.layers.6" in lines[1]
    assert "2048" in lines[2] and "input of model.layers.6.mlp.down_proj" in lines[2]
