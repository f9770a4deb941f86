"""Edit parsing and validation, spans, side effects and the side-by-side layout."""

from __future__ import annotations

import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.steer import FeatureEdit, format_edit, parse_edit, resolve_edits
from monosemantic.steer.commands import parse_span, side_by_side
from monosemantic.steer.compare import kl_per_position, next_token_loss
from monosemantic.steer.steering import check_span, steering_delta_fn


@pytest.mark.parametrize("text, expected", [
    ("123=10x", FeatureEdit(123, 10.0, "max")),
    ("7=-3x", FeatureEdit(7, -3.0, "max")),
    ("123=4.5", FeatureEdit(123, 4.5, "raw")),
    (" 5 = -0.25 ", FeatureEdit(5, -0.25, "raw")),
    ("9=1e2", FeatureEdit(9, 100.0, "raw")),
    ("0=.5X", FeatureEdit(0, 0.5, "max")),
])
def test_parse_edit(text, expected):
    assert parse_edit(text) == expected
    assert parse_edit(format_edit(expected)) == expected


@pytest.mark.parametrize("text", ["123", "=5x", "a=5", "12=x", "12=5y", "-1=5", "1=2=3", ""])
def test_parse_edit_rejects(text):
    with pytest.raises(UserError, match="FEATURE=VALUE"):
        parse_edit(text)


def test_resolve_edits_scales_max_units():
    max_act_F = torch.tensor([2.0, 4.0, 8.0])
    ids_E, values_E = resolve_edits([FeatureEdit(1, 10.0), FeatureEdit(2, -0.5, "raw")], 3,
                                    max_act_F)
    assert ids_E.tolist() == [1, 2]
    assert values_E.tolist() == [40.0, -0.5]


def test_resolve_edits_checks_raw_values_against_the_limit():
    max_act_F = torch.tensor([2.0, 4.0])
    with pytest.raises(UserError, match="beyond the limit"):
        resolve_edits([FeatureEdit(0, 201.0, "raw")], 2, max_act_F)
    assert resolve_edits([FeatureEdit(0, 199.0, "raw")], 2, max_act_F)[1].tolist() == [199.0]
    # Without max activations a raw value cannot be judged, so it passes.
    assert resolve_edits([FeatureEdit(0, 1e4, "raw")], 2)[1].tolist() == [1e4]


def test_resolve_edits_rejects_non_finite():
    with pytest.raises(UserError, match="finite"):
        resolve_edits([FeatureEdit(0, float("nan"), "raw")], 2)


def test_check_span():
    assert check_span(None) is None
    assert check_span(slice(None, 4)) == slice(0, 4)
    assert check_span(slice(2, None)) == slice(2, None)
    for bad, message in [(slice(0, 4, 2), "step"), (slice(3, 3), "empty"),
                         (slice(0, -1), "non-negative"), ((0, 4), "must be a slice")]:
        with pytest.raises(UserError, match=message):
            check_span(bad)


def test_parse_span():
    assert parse_span(None) is None
    assert parse_span("1:6") == slice(1, 6)
    assert parse_span("4:") == slice(4, None)
    assert parse_span(":3") == slice(0, 3)
    with pytest.raises(UserError, match="START:STOP"):
        parse_span("4")
    with pytest.raises(UserError, match="START:STOP"):
        parse_span("a:b")


def test_delta_fn_clamp_and_add_by_construction():
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=8, n_features=16, k=2))
    x_ND = torch.randn(5, 8)
    f_NF = sae.encode(x_ND)
    ids_E, values_E = torch.tensor([3, 9]), torch.tensor([1.5, 0.0])
    clamp = steering_delta_fn(sae, ids_E, values_E, "clamp")(x_ND)
    expected = (values_E - f_NF[:, ids_E]) @ sae.W_dec[ids_E]
    torch.testing.assert_close(clamp, expected)
    # The same as decoding the clamped codes and adding the unedited error back.
    f_edit_NF = f_NF.clone()
    f_edit_NF[:, ids_E] = values_E
    via_decode = sae.decode(f_edit_NF) + (x_ND - sae.decode(f_NF)) - x_ND
    torch.testing.assert_close(clamp, via_decode, rtol=1e-5, atol=1e-5)
    add = steering_delta_fn(sae, ids_E, values_E, "add")(x_ND)
    torch.testing.assert_close(add, (1.5 * sae.W_dec[3]).expand(5, -1))


def test_kl_and_loss():
    logits_SV = torch.randn(4, 10)
    assert kl_per_position(logits_SV, logits_SV).abs().max() < 1e-6
    assert (kl_per_position(logits_SV, torch.randn(4, 10)) > 0).all()
    uniform_SV = torch.zeros(3, 10)
    assert next_token_loss(uniform_SV, torch.tensor([1, 2, 3])) == pytest.approx(
        float(torch.log(torch.tensor(10.0))))


def test_side_by_side_aligns_columns():
    out = side_by_side("short", "a much longer text " * 4, ("left", "right"), width=43)
    lines = out.splitlines()
    assert lines[0].startswith("left") and "| right" in lines[0]
    bar = lines[0].index("|")
    assert all(line[bar] == "|" for line in lines[2:])
    assert len(lines) > 3
    assert "⏎" in side_by_side("a\nb", "c", ("l", "r"), width=43)
