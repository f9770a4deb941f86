"""The parametric law L(F, D) = E + A·F^(−α) + B·D^(−β) (F features, D training tokens) and
the compute-optimal allocation it implies under C = k·F·D.

Fitting (numpy only, variable projection): for each trial (α, β) the coefficients (E, A, B)
solve a weighted linear least-squares problem (weights 1/L: relative residuals); E < 0 is
refitted with E = 0, and A <= 0 or B <= 0 rules the trial out. (α, β) is searched on a grid,
then on two finer grids around the best point.

Optimum: minimising L on the curve k·F·D = C gives α·A·F^(−α) = β·B·D^(−β), hence
F_opt = G·(C/k)^(β/(α+β)), D_opt = (C/k)^(α/(α+β)) / G with G = (α·A/(β·B))^(1/(α+β)), and
L_opt(C) = E + (1 + α/β)·A·F_opt^(−α), a power law in C with exponent −α·β/(α+β).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monosemantic.laws.powerlaw import FitError, PowerLaw

ALPHA_GRID = np.geomspace(0.01, 3.0, 61)
"""Trial exponents for both α and β on the first, coarse search."""


@dataclass(frozen=True)
class ParametricLaw:
    """L(F, D) = E + 10^log10_A·F^(−alpha) + 10^log10_B·D^(−beta)."""

    E: float
    log10_A: float
    alpha: float
    log10_B: float
    beta: float

    def __call__(self, f: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        lf, ld = np.log10(np.asarray(f, dtype=float)), np.log10(np.asarray(d, dtype=float))
        return (self.E + np.power(10.0, self.log10_A - self.alpha * lf)
                + np.power(10.0, self.log10_B - self.beta * ld))

    def params(self) -> list[float]:
        return [self.E, self.log10_A, self.alpha, self.log10_B, self.beta]

    @classmethod
    def from_params(cls, params: list[float]) -> ParametricLaw:
        return cls(*params)

    def optimal_features(self, k: float) -> PowerLaw:
        """F_opt(C) at C = k·F·D."""
        s = self.alpha + self.beta
        log_g = (math.log10(self.alpha) + self.log10_A - math.log10(self.beta)
                 - self.log10_B) / s
        a = self.beta / s
        return PowerLaw(log_g - a * math.log10(k), a)

    def optimal_tokens(self, k: float) -> PowerLaw:
        """D_opt(C) = C / (k·F_opt(C))."""
        f = self.optimal_features(k)
        return PowerLaw(-f.log10_coef - math.log10(k), 1.0 - f.exponent)

    def optimal_loss(self, k: float) -> PowerLaw:
        """L(F_opt(C), D_opt(C)) as a law in C."""
        f = self.optimal_features(k)
        log_term = (self.log10_A + math.log10(1.0 + self.alpha / self.beta)
                    - self.alpha * f.log10_coef)
        return PowerLaw(log_term, -self.alpha * f.exponent, self.E)


def fit_parametric(f: np.ndarray, d: np.ndarray, y: np.ndarray) -> tuple[ParametricLaw, bool]:
    """The least-squares law and whether α or β ended on the edge of the search range."""
    f, d, y = (np.asarray(v, dtype=float) for v in (f, d, y))
    if len(np.unique(f)) < 3 or len(np.unique(d)) < 3:
        raise FitError("the parametric law needs at least 3 distinct sizes and 3 token budgets")
    lf_ref, ld_ref = float(np.mean(np.log10(f))), float(np.mean(np.log10(d)))
    u = np.power(10.0, np.log10(f) - lf_ref)
    v = np.power(10.0, np.log10(d) - ld_ref)
    alphas = betas = ALPHA_GRID
    best = _search(u, v, y, alphas, betas)
    step = math.log(ALPHA_GRID[1] / ALPHA_GRID[0])
    for _ in range(2):
        alphas = best[0] * np.exp(np.linspace(-step, step, 21))
        betas = best[1] * np.exp(np.linspace(-step, step, 21))
        best = _search(u, v, y, alphas, betas)
        step = step / 10
    alpha, beta, e, a_coef, b_coef = best
    if not (a_coef > 0 and b_coef > 0):
        raise FitError("no law with A > 0 and B > 0 fits these values")
    lo, hi = ALPHA_GRID[0], ALPHA_GRID[-1]
    on_edge = any(x <= lo * 1.0001 or x >= hi * 0.9999 for x in (alpha, beta))
    # A·u^(−α) = A·10^(α·lf_ref)·F^(−α)
    law = ParametricLaw(e, math.log10(a_coef) + alpha * lf_ref, alpha,
                        math.log10(b_coef) + beta * ld_ref, beta)
    return law, on_edge


def _search(u: np.ndarray, v: np.ndarray, y: np.ndarray, alphas: np.ndarray,
            betas: np.ndarray) -> tuple[float, float, float, float, float]:
    """(α, β, E, A, B) of the best feasible trial on the alphas × betas grid."""
    w = 1.0 / y
    fa_GN = np.power(u[None, :], -alphas[:, None]) * w
    db_HN = np.power(v[None, :], -betas[:, None]) * w
    n_g, n_h = len(alphas), len(betas)
    # Normal equations of the columns (w, w·u^−α, w·v^−β) against the target y·w = 1, built
    # from dot products so the trial grid costs matrix products, not an n-long loop per trial.
    gram = np.empty((n_g, n_h, 3, 3))
    gram[..., 0, 0] = w @ w
    gram[..., 0, 1] = gram[..., 1, 0] = (fa_GN @ w)[:, None]
    gram[..., 0, 2] = gram[..., 2, 0] = (db_HN @ w)[None, :]
    gram[..., 1, 1] = np.einsum("gn,gn->g", fa_GN, fa_GN)[:, None]
    gram[..., 2, 2] = np.einsum("hn,hn->h", db_HN, db_HN)[None, :]
    gram[..., 1, 2] = gram[..., 2, 1] = fa_GN @ db_HN.T
    rhs = np.empty((n_g, n_h, 3))
    rhs[..., 0] = w.sum()
    rhs[..., 1] = fa_GN.sum(axis=1)[:, None]
    rhs[..., 2] = db_HN.sum(axis=1)[None, :]
    n = float(len(y))
    coef_full, rss_full = _solve(gram, rhs, n)
    coef_noe, rss_noe = _solve(gram[..., 1:, 1:], rhs[..., 1:], n)
    use_noe = coef_full[..., 0] < 0
    rss = np.where(use_noe, rss_noe, rss_full)
    e = np.where(use_noe, 0.0, coef_full[..., 0])
    a = np.where(use_noe, coef_noe[..., 0], coef_full[..., 1])
    b = np.where(use_noe, coef_noe[..., 1], coef_full[..., 2])
    rss = np.where((a > 0) & (b > 0) & np.isfinite(rss), rss, np.inf)
    if not np.isfinite(rss).any():
        raise FitError("no law with A > 0 and B > 0 fits these values")
    i, j = np.unravel_index(int(np.argmin(rss)), rss.shape)
    return float(alphas[i]), float(betas[j]), float(e[i, j]), float(a[i, j]), float(b[i, j])


def _solve(gram: np.ndarray, rhs: np.ndarray, tt: float) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients and residual sums from batched normal equations (`tt`: the
    target's squared norm); a relative ridge of 1e-12 keeps collinear trials (α or β near 0,
    where a column is nearly the constant one) solvable."""
    scale = np.trace(gram, axis1=-2, axis2=-1)[..., None, None]
    coef = np.linalg.solve(gram + 1e-12 * scale * np.eye(gram.shape[-1]), rhs[..., None])[..., 0]
    return coef, tt - np.einsum("ghp,ghp->gh", coef, rhs)
