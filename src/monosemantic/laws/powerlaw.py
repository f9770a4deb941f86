"""One-variable power laws y = offset + 10^log10_coef · x^exponent, fitted with numpy alone.

The pure law (offset 0) is ordinary least squares of log y on log x. The law with an
irreducible offset E >= 0 (for a falling loss) is fitted by variable projection: for each
trial exponent the best (E, c) is a weighted linear least-squares problem (weights 1/y, so
residuals are relative, close to log residuals), and the exponent is searched on a grid that
is refined twice around its best value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXPONENT_GRID = np.geomspace(1e-3, 3.0, 241)
"""Trial magnitudes of a falling law's exponent (the law is y = E + c·x^(−b), b in here)."""


class FitError(ValueError):
    """The data cannot determine the law (too few distinct points, degenerate values)."""


@dataclass(frozen=True)
class PowerLaw:
    """y = offset + 10^log10_coef · x^exponent."""

    log10_coef: float
    exponent: float
    offset: float = 0.0

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        log_x = np.log10(np.asarray(x, dtype=float))
        return self.offset + np.power(10.0, self.log10_coef + self.exponent * log_x)

    def params(self) -> list[float]:
        return [self.log10_coef, self.exponent, self.offset]

    @classmethod
    def from_params(cls, params: list[float]) -> PowerLaw:
        return cls(*params)

    def formula(self, x: str = "C", y: str = "y") -> str:
        coef = f"{10.0 ** self.log10_coef:.4g}"
        core = f"{coef}·{x}^{self.exponent:.4g}"
        return f"{y} = {self.offset:.4g} + {core}" if self.offset else f"{y} = {core}"


def log_rss(law: PowerLaw, x: np.ndarray, y: np.ndarray) -> float:
    """Sum of squared residuals of log10 y (the scale every law here is judged on)."""
    pred = law(x)
    if np.any(pred <= 0):
        return math.inf
    return float(np.sum((np.log10(y) - np.log10(pred)) ** 2))


def aicc(rss: float, n: int, k: int) -> float:
    """Small-sample Akaike criterion of a least-squares fit with k parameters on n points."""
    if n - k - 1 <= 0:
        return math.inf
    return n * math.log(max(rss, 1e-300) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def fit_power(x: np.ndarray, y: np.ndarray) -> PowerLaw:
    """Least squares of log y = log c + p·log x; needs two distinct x and positive values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
        raise FitError("a power law needs finite positive values")
    lx, ly = np.log10(x), np.log10(y)
    if np.ptp(lx) == 0:
        raise FitError("a power law needs at least two distinct x values")
    slope, intercept = np.polyfit(lx, ly, 1)
    return PowerLaw(float(intercept), float(slope))


def fit_falling_with_offset(x: np.ndarray, y: np.ndarray) -> PowerLaw:
    """y = E + c·x^(−b) with E >= 0, c > 0, b in EXPONENT_GRID's range (refined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 3:
        raise FitError("a power law with an offset needs at least three distinct x values")
    log_ref = float(np.mean(np.log10(x)))
    u = np.power(10.0, np.log10(x) - log_ref)  # x scaled to ~1 keeps the columns comparable
    grid = EXPONENT_GRID
    best_b, best_e, best_c = _best_offset_fit(u, y, grid)
    for _ in range(2):
        step = np.log(grid[1] / grid[0]) if len(grid) > 1 else 0.1
        grid = best_b * np.exp(np.linspace(-step, step, 41))
        best_b, best_e, best_c = _best_offset_fit(u, y, grid)
    if best_c <= 0:
        raise FitError("no falling power law fits these values")
    # c·u^(−b) = c·10^(b·log_ref)·x^(−b)
    return PowerLaw(math.log10(best_c) + best_b * log_ref, -best_b, best_e)


def _best_offset_fit(u: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[float, float, float]:
    """The (b, E, c) of `grid` with the least relative squared error, E >= 0, c > 0."""
    w = 1.0 / y
    cols_GN = np.power(u[None, :], -grid[:, None]) * w[None, :]  # the c column, weighted
    ones_N = w
    target = np.ones_like(y)  # y·w
    # Closed-form 2x2 normal equations for (E, c) at every trial exponent.
    s11 = float(ones_N @ ones_N)
    s12 = cols_GN @ ones_N
    s22 = np.einsum("gn,gn->g", cols_GN, cols_GN)
    t1 = float(ones_N @ target)
    t2 = cols_GN @ target
    det = s11 * s22 - s12**2
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(det > 0, (s22 * t1 - s12 * t2) / det, -1.0)
        c = np.where(det > 0, (s11 * t2 - s12 * t1) / det, 0.0)
        c_only = t2 / s22  # refit with E = 0 where E came out negative
    e = np.where(e < 0, 0.0, e)
    c = np.where(e == 0.0, c_only, c)
    resid_GN = e[:, None] * ones_N[None, :] + c[:, None] * cols_GN - target[None, :]
    rss = np.einsum("gn,gn->g", resid_GN, resid_GN)
    rss = np.where(c > 0, rss, np.inf)
    i = int(np.argmin(rss))
    return float(grid[i]), float(e[i]), float(c[i])


def falling_law(x: np.ndarray, y: np.ndarray, irreducible: str) -> tuple[PowerLaw, str]:
    """The loss-vs-compute law and why it has (or lacks) the irreducible offset.

    `irreducible`: "no" fits the pure law, "yes" the law with E >= 0, "auto" keeps E only
    when there are at least 5 points, E > 0, and the offset lowers AICc (on log residuals)
    by more than 2 against the pure law."""
    pure = fit_power(x, y)
    if irreducible == "no":
        return pure, "not fitted (--irreducible no)"
    if irreducible == "yes":
        return fit_falling_with_offset(x, y), "fitted (--irreducible yes)"
    n = len(x)
    if n < 5:
        return pure, f"left out: {n} frontier points (the offset needs at least 5)"
    try:
        with_e = fit_falling_with_offset(x, y)
    except FitError as err:
        return pure, f"left out: {err}"
    a_pure = aicc(log_rss(pure, x, y), n, 2)
    a_with = aicc(log_rss(with_e, x, y), n, 3)
    if with_e.offset > 0 and a_with < a_pure - 2:
        return with_e, f"kept: AICc {a_with:.1f} vs {a_pure:.1f} without it"
    return pure, f"left out: AICc {a_with:.1f} with it vs {a_pure:.1f} without (needs 2 lower)"
