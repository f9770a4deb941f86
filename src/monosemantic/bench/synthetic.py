"""Synthetic activations built from known sparse features in superposition.

A token is x = Σ_i a_i·v_i + noise: `n_true` unit directions v_i in d dimensions (n_true > d:
superposition) and sparse non-negative activations a_i. What fires is drawn per token from
*sources*, each firing independently with its own probability:

- an independent feature is its own source;
- a group of `group_size` correlated features shares one source: when it fires, each member
  fires with probability `group_member_prob` (members co-occur far more than chance);
- a parent feature is its own source; each of its `children_per_parent` children can only fire
  on a token where the parent fires, then with probability `child_prob` (a hierarchy).

Source probabilities follow a Zipf law: the source of (random) rank r fires with probability
min(`max_frequency`, c·r^-`zipf_exponent`), c chosen so that the expected number of active
features per token is `mean_active`.

Directions are random unit vectors, except that a child's direction has cosine
`child_cosine` with its parent's (0: a random direction like any other feature; near 1: the
child is a refinement of the parent, the case where SAEs tend to absorb one into the other).
Magnitudes have mean 1 (`magnitude`); `noise` adds isotropic Gaussian noise whose per-coordinate
std is `noise` times the RMS per coordinate of the signal (computed as if the directions were
orthogonal: sqrt(mean_active·E[a²]/d)).

Everything is a deterministic function of `seed`: the dictionary and the source probabilities
come from one generator; the tokens come in fixed blocks of rows, each from its own generator,
so any row range is reproduced exactly whatever the chunking (`SyntheticFeatures.chunk`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from monosemantic.config import ConfigError
from monosemantic.sae.kernels import SparseCodes

BLOCK_FLOATS = 1 << 21
"""Rows are drawn in blocks of about this many random draws per feature (16 MiB of float64),
between 64 and 4096 rows, so memory per block is bounded for any `n_true` up to ~30k; the
block size depends on the config only, which keeps the rows independent of the chunking."""

ROLES = ("independent", "group", "parent", "child")
"""Role names of `SyntheticFeatures.role_T` (role_T holds their indices)."""


@dataclass
class SyntheticConfig:
    """Known sparse features in superposition: the data a ground-truth benchmark trains on."""

    d: int = 32
    """Width of the activations."""
    n_true: int = 128
    """Number of true features (directions)."""
    mean_active: float = 4.0
    """Expected number of active features per token (the true L0)."""
    zipf_exponent: float = 1.0
    """Source firing probabilities fall as rank^-s (0: all sources equally frequent)."""
    max_frequency: float = 0.25
    """Cap on any source's firing probability."""
    n_groups: int = 4
    """Groups of correlated features (each fires from one shared source)."""
    group_size: int = 4
    """Features per correlated group."""
    group_member_prob: float = 0.75
    """Probability that a member fires when its group's source fires."""
    n_parents: int = 4
    """Parent features of the hierarchy."""
    children_per_parent: int = 3
    """Child features per parent (they fire only together with their parent)."""
    child_prob: float = 0.4
    """Probability that a child fires on a token where its parent fires."""
    child_cosine: float = 0.0
    """Cosine between a child's direction and its parent's (0: unrelated random directions)."""
    magnitude: Literal["uniform", "exponential", "lognormal"] = "uniform"
    """Distribution of active magnitudes, all with mean 1: uniform on [0.5, 1.5]; exponential
    shifted to start at 0.1; lognormal with sigma 0.5."""
    noise: float = 0.0
    """Std of the Gaussian noise per coordinate, relative to the signal's RMS per coordinate."""
    seed: int = 0
    """Seed of the dictionary, the frequencies and the tokens."""

    def validate(self) -> None:
        """Raise `ConfigError` for values that cannot make a dataset."""
        for name in ("d", "n_true", "group_size", "children_per_parent"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be an integer >= 1, got "
                                  f"{getattr(self, name)!r}")
        for name in ("n_groups", "n_parents"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be an integer >= 0, got "
                                  f"{getattr(self, name)!r}")
        structured = self.n_groups * self.group_size + self.n_parents * (
            1 + self.children_per_parent)
        if structured > self.n_true:
            raise ConfigError(
                f"the groups and the hierarchy take {structured} features but --n-true is "
                f"{self.n_true}: raise --n-true or lower --n-groups / --n-parents")
        for name in ("group_member_prob", "child_prob", "max_frequency"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"--{_flag(name)} must be in (0, 1], got "
                                  f"{getattr(self, name)}")
        if not -1 < self.child_cosine < 1:
            raise ConfigError(f"--child-cosine must be in (-1, 1), got {self.child_cosine}")
        if not (self.zipf_exponent >= 0 and math.isfinite(self.zipf_exponent)):
            raise ConfigError(f"--zipf-exponent must be >= 0, got {self.zipf_exponent}")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ConfigError(f"--noise must be >= 0, got {self.noise}")
        if self.magnitude not in ("uniform", "exponential", "lognormal"):
            raise ConfigError(f"--magnitude must be uniform, exponential or lognormal, got "
                              f"{self.magnitude!r}")
        most = _expected_active(self, torch.full((self.n_sources,), self.max_frequency,
                                                 dtype=torch.float64))
        if not 0 < self.mean_active < most:
            raise ConfigError(
                f"--mean-active must be in (0, {most:.3g}) (every source at --max-frequency "
                f"{self.max_frequency}), got {self.mean_active}: lower it, or raise --n-true or "
                "--max-frequency")

    @property
    def n_sources(self) -> int:
        """Independent features + groups + parents (children and members have no own source)."""
        return self.n_independent + self.n_groups + self.n_parents

    @property
    def n_independent(self) -> int:
        return self.n_true - self.n_groups * self.group_size - self.n_parents * (
            1 + self.children_per_parent)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _expected_active(cfg: SyntheticConfig, p_S: torch.Tensor) -> float:
    """Expected active features per token for source probabilities p_S (sources in layout
    order: independent, groups, parents)."""
    n_ind, n_grp = cfg.n_independent, cfg.n_groups
    ind = p_S[:n_ind].sum()
    grp = p_S[n_ind:n_ind + n_grp].sum() * cfg.group_size * cfg.group_member_prob
    par = p_S[n_ind + n_grp:].sum() * (1 + cfg.children_per_parent * cfg.child_prob)
    return float(ind + grp + par)


class SyntheticFeatures:
    """The ground truth of a `SyntheticConfig` and the tokens drawn from it.

    Feature layout (ids): independent features first, then the groups' members (group by
    group), then each parent followed by its children.
    """

    def __init__(self, cfg: SyntheticConfig):
        cfg.validate()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        self._layout()
        self.source_prob_S = self._source_probs(gen)
        self.directions_TD = self._directions(gen)
        self.block_rows = max(64, min(4096, BLOCK_FLOATS // cfg.n_true))

    def _layout(self) -> None:
        cfg = self.cfg
        n_ind, n_grp, n_par = cfg.n_independent, cfg.n_groups, cfg.n_parents
        role, source, gate = [], [], []  # gate: member/child firing probability given source
        parent = []
        role += [0] * n_ind
        source += list(range(n_ind))
        gate += [1.0] * n_ind
        parent += [-1] * n_ind
        for g in range(n_grp):
            role += [1] * cfg.group_size
            source += [n_ind + g] * cfg.group_size
            gate += [cfg.group_member_prob] * cfg.group_size
            parent += [-1] * cfg.group_size
        for p in range(n_par):
            parent_id = len(role)
            role += [2] + [3] * cfg.children_per_parent
            source += [n_ind + n_grp + p] * (1 + cfg.children_per_parent)
            gate += [1.0] + [cfg.child_prob] * cfg.children_per_parent
            parent += [-1] + [parent_id] * cfg.children_per_parent
        self.role_T = torch.tensor(role)
        self.source_T = torch.tensor(source)
        self.gate_T = torch.tensor(gate, dtype=torch.float64)
        self.parent_T = torch.tensor(parent)

    def _source_probs(self, gen: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        rank_S = torch.randperm(cfg.n_sources, generator=gen).double() + 1
        shape_S = rank_S.pow(-cfg.zipf_exponent)
        lo, hi = 0.0, cfg.max_frequency / float(shape_S.min())
        for _ in range(100):  # bisection on c: the expected L0 grows with c
            mid = (lo + hi) / 2
            p_S = (mid * shape_S).clamp(max=cfg.max_frequency)
            lo, hi = (mid, hi) if _expected_active(cfg, p_S) < cfg.mean_active else (lo, mid)
        return (hi * shape_S).clamp(max=cfg.max_frequency)

    def _directions(self, gen: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        v_TD = torch.randn(cfg.n_true, cfg.d, generator=gen, dtype=torch.float64)
        v_TD /= v_TD.norm(dim=1, keepdim=True)
        if cfg.child_cosine != 0:
            kids = (self.parent_T >= 0).nonzero().squeeze(1)
            par_KD = v_TD[self.parent_T[kids]]
            own_KD = v_TD[kids] - (v_TD[kids] * par_KD).sum(1, keepdim=True) * par_KD
            own_KD /= own_KD.norm(dim=1, keepdim=True)
            c = cfg.child_cosine
            v_TD[kids] = c * par_KD + math.sqrt(1 - c * c) * own_KD
        return v_TD.float()

    @property
    def frequency_T(self) -> torch.Tensor:
        """Probability that each true feature fires on a token (float64 [n_true])."""
        return self.source_prob_S[self.source_T] * self.gate_T

    @property
    def noise_std(self) -> float:
        cfg = self.cfg
        second_moment = {"uniform": 1 + 1 / 12, "exponential": 0.1**2 + 2 * 0.9 * 0.1 + 2 * 0.81,
                         "lognormal": math.exp(0.25)}[cfg.magnitude]
        return cfg.noise * math.sqrt(cfg.mean_active * second_moment / cfg.d)

    def chunk(self, lo: int, hi: int) -> tuple[torch.Tensor, SparseCodes]:
        """Rows [lo, hi): tokens x [hi - lo, d] (float32) and their true activations (rows
        relative to `lo`, features ascending within a row)."""
        if not 0 <= lo <= hi:
            raise ValueError(f"row range [{lo}, {hi}) is not valid")
        xs, rows, ids, vals = [], [], [], []
        first = lo // self.block_rows
        for block in range(first, -(-hi // self.block_rows)):
            start = block * self.block_rows
            x_BD, codes = self._block(block)
            a, b = max(lo, start) - start, min(hi, start + self.block_rows) - start
            keep = (codes.row_N >= a) & (codes.row_N < b)
            xs.append(x_BD[a:b])
            rows.append(codes.row_N[keep] + (start - lo))
            ids.append(codes.idx_N[keep])
            vals.append(codes.vals_N[keep])
        if not xs:
            empty = torch.zeros(0, dtype=torch.long)
            return (torch.zeros(0, self.cfg.d),
                    SparseCodes(empty, empty, torch.zeros(0), 0, self.cfg.n_true))
        return torch.cat(xs), SparseCodes(torch.cat(rows), torch.cat(ids), torch.cat(vals),
                                          hi - lo, self.cfg.n_true)

    def chunks(self, n_rows: int, chunk_rows: int = 16384, start: int = 0
               ) -> Iterator[tuple[torch.Tensor, SparseCodes]]:
        """Rows [start, start + n_rows) in chunks of `chunk_rows` (memory bounded by the chunk)."""
        for lo in range(start, start + n_rows, chunk_rows):
            yield self.chunk(lo, min(lo + chunk_rows, start + n_rows))

    def _block(self, block: int) -> tuple[torch.Tensor, SparseCodes]:
        cfg, n = self.cfg, self.block_rows
        # One generator per block: a row's values never depend on how the rows are chunked.
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + 7919 * (block + 1)) % 2**63)
        src_BS = torch.rand(n, cfg.n_sources, generator=gen, dtype=torch.float64) \
            < self.source_prob_S
        gate_BT = torch.rand(n, cfg.n_true, generator=gen, dtype=torch.float64) < self.gate_T
        fires_BT = src_BS[:, self.source_T] & gate_BT
        row_N, idx_N = fires_BT.nonzero(as_tuple=True)
        vals_N = self._magnitudes(row_N.shape[0], gen)
        codes = SparseCodes(row_N, idx_N, vals_N, n, cfg.n_true)
        x_BD = codes.decode(self.directions_TD)
        if cfg.noise > 0:
            x_BD += self.noise_std * torch.randn(n, cfg.d, generator=gen)
        return x_BD, codes

    def _magnitudes(self, n: int, gen: torch.Generator) -> torch.Tensor:
        kind = self.cfg.magnitude
        if kind == "uniform":
            return torch.rand(n, generator=gen) + 0.5
        if kind == "exponential":
            return 0.1 + 0.9 * torch.empty(n).exponential_(generator=gen)
        return torch.exp(0.5 * torch.randn(n, generator=gen) - 0.125)
