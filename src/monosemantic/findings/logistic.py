"""Logistic regression by Newton's method, for the coverage curves' sigmoid fits.

P(y = 1 | x) = 1 / (1 + exp(-(b0 + b·x))), fitted by maximum likelihood with a small L2
penalty `ridge`·|b|² on the slopes (not the intercept): with perfectly separated data the
unpenalised optimum is at infinity, the penalty keeps it finite (and marks it: `separated`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monosemantic.errors import UserError


@dataclass
class LogisticFit:
    """Fitted coefficients (intercept first) of the named predictors."""

    coef: np.ndarray
    names: tuple[str, ...]
    n: int
    log_likelihood: float
    converged: bool
    separated: bool
    """Some threshold on the fitted logit splits the 0s from the 1s exactly (the slopes are
    then set by the ridge penalty, not by the data)."""

    def predict(self, x_NP: np.ndarray) -> np.ndarray:
        return sigmoid(self.coef[0] + np.asarray(x_NP, dtype=float) @ self.coef[1:])

    def as_dict(self) -> dict[str, object]:
        return {"coefficients": {n: float(c) for n, c in zip(("intercept", *self.names),
                                                             self.coef)},
                "n": self.n, "log_likelihood": self.log_likelihood,
                "converged": self.converged, "separated": self.separated}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def fit_logistic(x_NP: np.ndarray, y_N: np.ndarray, names: tuple[str, ...],
                 ridge: float = 1e-3, max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Maximum-likelihood (penalised) fit of y (0/1) on the columns of x; UserError when y is
    all one class (no sigmoid to fit)."""
    x_NP = np.asarray(x_NP, dtype=float).reshape(len(y_N), -1)
    y_N = np.asarray(y_N, dtype=float)
    if x_NP.shape[1] != len(names):
        raise ValueError(f"{x_NP.shape[1]} predictors but {len(names)} names")
    if len(y_N) == 0 or y_N.min() == y_N.max():
        raise UserError("every point has the same outcome: no sigmoid to fit")
    X = np.hstack([np.ones((len(y_N), 1)), x_NP])
    penalty = np.full(X.shape[1], float(ridge))
    penalty[0] = 0.0
    coef = np.zeros(X.shape[1])
    coef[0] = np.log(y_N.mean() / (1 - y_N.mean()))
    converged = False
    objective = _log_likelihood(X @ coef, y_N) - 0.5 * np.sum(penalty * coef**2)
    for _ in range(max_iter):
        p = sigmoid(X @ coef)
        grad = X.T @ (y_N - p) - penalty * coef
        w = np.clip(p * (1 - p), 1e-12, None)
        hess = (X * w[:, None]).T @ X + np.diag(penalty) + 1e-12 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        # Newton steps can overshoot far from the optimum: halve until the objective rises.
        for _halving in range(60):
            trial = coef + step
            value = _log_likelihood(X @ trial, y_N) - 0.5 * np.sum(penalty * trial**2)
            if value >= objective - 1e-12 * abs(objective):
                break
            step = step / 2
        coef, objective = trial, max(value, objective)
        if np.max(np.abs(step)) < tol * (1 + np.max(np.abs(coef))):
            converged = True
            break
    z = X @ coef
    separated = bool(z[y_N == 1].min() > z[y_N == 0].max())
    return LogisticFit(coef, names, len(y_N), _log_likelihood(z, y_N), converged, separated)


def _log_likelihood(z_N: np.ndarray, y_N: np.ndarray) -> float:
    """Σ y·log σ(z) + (1 − y)·log(1 − σ(z)), computed stably."""
    return float(-np.sum(np.logaddexp(0.0, -z_N) * y_N + np.logaddexp(0.0, z_N) * (1 - y_N)))
