"""The values the SAE classes exchange with the trainer and each other: `SAEOutput` (a forward's
result), `TrainCodes` (codes before decoding, for cross-layer dictionaries), `BatchGroup` (the
ranks a batch statistic is taken over), and the config checks the architectures share."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Protocol

import torch
from torch import nn

from monosemantic.config import ConfigError
from monosemantic.sae.kernels import SparseCodes

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig


def check_positive_int(cfg: SAEConfig, name: str) -> None:
    """Raise `ConfigError` unless the field `name` of `cfg` is an integer >= 1."""
    value = getattr(cfg, name)
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"SAE {name} must be a positive integer, got {value!r}")


def check_non_negative(cfg: SAEConfig, *names: str) -> None:
    """Raise `ConfigError` unless each named field of `cfg` is a finite number >= 0."""
    for name in names:
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value}")


def check_positive(cfg: SAEConfig, *names: str) -> None:
    """Raise `ConfigError` unless each named field of `cfg` is > 0."""
    for name in names:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")


class BatchGroup(Protocol):
    """The processes that share one global batch in data-parallel training (each holds an
    equal slice of its rows): losses that depend on batch statistics reduce them over it."""

    @property
    def world(self) -> int: ...

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over the processes, in place (no autograd)."""
        ...

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        """Minimum over the processes, in place."""
        ...

    def gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's `t` concatenated along dim 0 in process order."""
        ...


class SAEOutput:
    """What `SAE.forward` returns: reconstruction, codes, named loss terms and their sum.

    Codes come dense (`f_BF`) or as a `SparseCodes` list (`codes`, what the sparse training paths
    produce); reading `f_BF` from a list builds the dense B×F matrix once, so the trainer's hot
    loop reads `fires_F()` instead.
    """

    def __init__(self, x_hat_BD: torch.Tensor, f_BF: torch.Tensor | None,
                 losses: dict[str, torch.Tensor], loss: torch.Tensor,
                 codes: SparseCodes | None = None):
        if (f_BF is None) == (codes is None):
            raise ValueError("SAEOutput needs exactly one of f_BF and codes")
        self.x_hat_BD, self.losses, self.loss = x_hat_BD, losses, loss
        self.codes = codes
        self._f_BF = f_BF

    @property
    def f_BF(self) -> torch.Tensor:
        """Dense codes [B, F] (built from `codes` on first access)."""
        if self._f_BF is None:
            assert self.codes is not None
            self._f_BF = self.codes.dense()
        return self._f_BF

    def fires_F(self) -> torch.Tensor:
        """Per-feature number of rows whose code is nonzero (int64 [F]; no host sync)."""
        if self.codes is not None:
            return self.codes.fires_F()
        return torch.count_nonzero(self.f_BF.detach(), dim=0)


class TrainCodes(NamedTuple):
    """What `SAE.train_codes` returns: codes as a list (`codes`) or dense (`f_BF`), the
    pre-activations without grad (`z_BF`, for AuxK) and the weighted sparsity terms."""

    codes: SparseCodes | None
    f_BF: torch.Tensor | None
    z_BF: torch.Tensor
    sparsity: dict[str, torch.Tensor]

    def decode(self, W_dec_FD: torch.Tensor) -> torch.Tensor:
        """codes @ W_dec (no bias), from the list or the dense codes."""
        if self.codes is not None:
            return self.codes.decode(W_dec_FD)
        assert self.f_BF is not None
        return nn.functional.linear(self.f_BF, W_dec_FD.T)

    def fires_F(self) -> torch.Tensor:
        """Per-feature number of rows whose code is nonzero (int64 [F])."""
        if self.codes is not None:
            return self.codes.fires_F()
        assert self.f_BF is not None
        return torch.count_nonzero(self.f_BF.detach(), dim=0)
