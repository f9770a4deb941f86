"""Power laws, the parametric L(F, D) and its compute-optimal allocation, on exact data."""

import math

import numpy as np
import pytest

from monosemantic.laws.parametric import ParametricLaw, fit_parametric
from monosemantic.laws.powerlaw import (
    FitError,
    PowerLaw,
    falling_law,
    fit_falling_with_offset,
    fit_power,
)

C = np.geomspace(1e10, 1e15, 8)


def test_pure_power_law_is_recovered():
    law = fit_power(C, 3.0 * C**-0.2)
    assert law.exponent == pytest.approx(-0.2, abs=1e-9)
    assert 10**law.log10_coef == pytest.approx(3.0, rel=1e-6)
    assert law(1e16) == pytest.approx(3.0 * 1e16**-0.2, rel=1e-6)


def test_power_law_needs_two_distinct_x():
    with pytest.raises(FitError, match="two distinct"):
        fit_power(np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0]))


def test_offset_law_is_recovered():
    law = fit_falling_with_offset(C, 0.05 + 40.0 * C**-0.15)
    assert law.offset == pytest.approx(0.05, rel=1e-3)
    assert law.exponent == pytest.approx(-0.15, rel=1e-3)


def test_auto_keeps_the_offset_only_when_the_data_show_one():
    with_e, note = falling_law(C, 0.05 + 40.0 * C**-0.15, "auto")
    assert with_e.offset > 0 and note.startswith("kept")
    rng = np.random.default_rng(0)
    noisy_pure = 3.0 * C**-0.2 * np.exp(0.01 * rng.standard_normal(len(C)))
    pure, note = falling_law(C, noisy_pure, "auto")
    assert pure.offset == 0 and note.startswith("left out")
    four, note = falling_law(C[:4], 0.05 + 40.0 * C[:4] ** -0.15, "auto")
    assert four.offset == 0 and "at least 5" in note


def _grid_law(law: ParametricLaw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, d = np.meshgrid(2.0 ** np.arange(8, 14), 2.0 ** np.arange(16, 28, 2))
    f, d = f.ravel(), d.ravel()
    return f, d, law(f, d)


TRUE = ParametricLaw(E=0.05, log10_A=math.log10(2.0), alpha=0.5, log10_B=math.log10(5.0),
                     beta=0.3)


def test_parametric_law_is_recovered():
    fitted, on_edge = fit_parametric(*_grid_law(TRUE))
    assert not on_edge
    assert fitted.alpha == pytest.approx(0.5, abs=2e-3)
    assert fitted.beta == pytest.approx(0.3, abs=2e-3)
    assert fitted.E == pytest.approx(0.05, abs=1e-3)


def test_parametric_law_needs_three_sizes():
    f, d, y = _grid_law(TRUE)
    keep = f <= 512
    with pytest.raises(FitError, match="3 distinct sizes"):
        fit_parametric(f[keep], d[keep], y[keep])


def test_optimum_spends_the_budget_and_beats_its_neighbours():
    k = 384.0
    for c in (1e14, 1e17):
        f_opt = float(TRUE.optimal_features(k)(c))
        d_opt = float(TRUE.optimal_tokens(k)(c))
        assert k * f_opt * d_opt == pytest.approx(c, rel=1e-9)
        best = float(TRUE(f_opt, d_opt))
        for factor in (0.8, 1.25):
            assert best < float(TRUE(f_opt * factor, d_opt / factor))
        assert float(TRUE.optimal_loss(k)(c)) == pytest.approx(best, rel=1e-9)
    assert TRUE.optimal_features(k).exponent == pytest.approx(0.3 / 0.8)
    assert TRUE.optimal_loss(k).exponent == pytest.approx(-0.5 * 0.3 / 0.8)


def test_power_law_formula_and_round_trip():
    law = PowerLaw(1.0, -0.25, 0.1)
    assert PowerLaw.from_params(law.params()) == law
    assert law.formula("C", "L") == "L = 0.1 + 10·C^-0.25"
