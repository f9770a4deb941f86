"""The splitting finding's warning for dictionaries made of copies of few directions."""

from monosemantic.findings.splitting import TWIN_WARNING, twin_warnings


def test_runs_with_copied_decoder_directions_are_named():
    names = ["f256_relu", "f512_relu", "f1k_relu"]
    (warning,) = twin_warnings(names, [0.99, 0.25, None])
    assert "f256_relu (0.99)" in warning and "f512_relu" not in warning
    assert "f1k_relu" not in warning


def test_no_warning_at_or_below_the_threshold():
    assert twin_warnings(["a", "b"], [TWIN_WARNING, 0.2]) == []
    assert twin_warnings([], []) == []
