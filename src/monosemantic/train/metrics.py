"""Reconstruction and sparsity metrics accumulated on the device between log steps.

NMSE = E||x - x_hat||^2 / E||x - E[x]||^2 (the mean is subtracted; E[x] is the mean over the
accumulated rows) and variance explained = 1 - NMSE. L0 = mean number of active features per row.
Sums are float64 so long windows and the variance's E||x||^2 - ||E[x]||^2 form stay accurate.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ReconstructionSums:
    """Running sums from which NMSE and L0 follow; `add` never leaves the device."""

    def __init__(self, d: int, device: torch.device | str):
        self.device = torch.device(device)
        self.sum_x_D = torch.zeros(d, dtype=torch.float64, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # sse, sum ||x||^2, active
        self.rows = 0

    def add(self, x_BD: Tensor, x_hat_BD: Tensor, n_active: Tensor) -> None:
        """Accumulate a batch: inputs, reconstructions and the batch's number of active features."""
        sse = torch.linalg.vector_norm(x_BD - x_hat_BD.to(x_BD.dtype)).square()
        self.sums[0].add_(sse)
        self.sums[1].add_(torch.linalg.vector_norm(x_BD).square())
        self.sums[2].add_(n_active)
        self.sum_x_D.add_(x_BD.sum(0))
        self.rows += x_BD.shape[0]

    def result(self) -> dict[str, float]:
        """NMSE, variance explained, L0 and MSE per row (one host sync)."""
        if self.rows == 0:
            return {}
        sse, sum_sq, active = self.sums.tolist()
        mean_sq = torch.dot(self.sum_x_D, self.sum_x_D).item() / self.rows
        total_var = max(sum_sq - mean_sq, 1e-30)
        nmse = sse / total_var
        return {
            "nmse": nmse,
            "variance_explained": 1.0 - nmse,
            "mse": sse / self.rows,
            "l0": active / self.rows,
        }

    def reset(self) -> None:
        self.sum_x_D.zero_()
        self.sums.zero_()
        self.rows = 0

    def state_dict(self) -> dict:
        return {"sum_x_D": self.sum_x_D.cpu(), "sums": self.sums.cpu(), "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.sum_x_D.copy_(state["sum_x_D"])
        self.sums.copy_(state["sums"])
        self.rows = int(state["rows"])


class LossSums:
    """Running sums of the total loss and its named parts, plus the first non-finite step."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.names: list[str] = []
        self.sums = torch.zeros(1, dtype=torch.float64, device=device)
        self.steps = 0
        # -1 while every loss so far was finite; else the first step whose loss was NaN/Inf.
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, step: int, loss: Tensor, parts: dict[str, Tensor]) -> None:
        if not self.names and parts:
            self.names = sorted(parts)
            self.sums = torch.zeros(1 + len(self.names), dtype=torch.float64, device=self.device)
        self.sums[0].add_(loss.detach())
        for i, name in enumerate(self.names, start=1):
            if name in parts:  # a part an architecture skips on some steps counts as 0
                self.sums[i].add_(parts[name].detach())
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
        self.first_bad_step.masked_fill_(bad, step)
        self.steps += 1

    def bad_step(self) -> int | None:
        """The first step with a non-finite loss, or None (one host sync)."""
        step = int(self.first_bad_step.item())
        return None if step < 0 else step

    def result(self) -> dict[str, float]:
        if self.steps == 0:
            return {}
        values = (self.sums / self.steps).tolist()
        out = {"loss": values[0]}
        out.update({f"loss_{name}": v for name, v in zip(self.names, values[1:])})
        return out

    def reset(self) -> None:
        self.sums.zero_()
        self.steps = 0

    def state_dict(self) -> dict:
        return {"names": list(self.names), "sums": self.sums.cpu(), "steps": self.steps,
                "first_bad_step": self.first_bad_step.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.names = list(state["names"])
        self.sums = state["sums"].to(self.device).clone()
        self.steps = int(state["steps"])
        self.first_bad_step.copy_(state["first_bad_step"])
