"""Synthetic aligned stores for crosscoder tests: sites that share sparse features (and some
features that live at one site only), written as a multi-hook harvest or as separate stores."""

from __future__ import annotations

from pathlib import Path

import torch

from monosemantic.activations.writer import StoreWriter


def planted_acts(n_rows: int, widths: tuple[int, ...], n_shared: int = 12,
                 only_first: int = 4, p_fire: float = 0.08, seed: int = 0
                 ) -> list[torch.Tensor]:
    """Per-site activations [N, d_s] of sparse features: `n_shared` features write at every
    site, `only_first` more write at the first site only (zero direction elsewhere)."""
    return planted_features(n_rows, widths, n_shared, only_first, p_fire, seed)[0]


def planted_features(n_rows: int, widths: tuple[int, ...], n_shared: int = 12,
                     only_first: int = 4, p_fire: float = 0.08, seed: int = 0
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`planted_acts` and each site's feature directions [n_shared + only_first, d_s] (unit
    rows; the first-site-only features' rows are 0 at the other sites)."""
    gen = torch.Generator().manual_seed(seed)
    n_feat = n_shared + only_first
    fire_NF = (torch.rand(n_rows, n_feat, generator=gen) < p_fire).float()
    f_NF = fire_NF * (1 + torch.rand(n_rows, n_feat, generator=gen))
    sites, directions = [], []
    for s, d in enumerate(widths):
        dirs_FD = torch.randn(n_feat, d, generator=gen)
        dirs_FD /= dirs_FD.norm(dim=1, keepdim=True)
        if s > 0:
            dirs_FD[n_shared:] = 0
        noise = 0.01 * torch.randn(n_rows, d, generator=gen)
        sites.append((f_NF @ dirs_FD + noise) * (s + 1))  # a different scale per site
        directions.append(dirs_FD)
    return sites, directions


def write_site_store(path: Path, acts_ND: torch.Tensor, hook: str, model: str,
                     tokens_N: torch.Tensor | None = None, shard_rows: int = 512) -> Path:
    """One store of `acts_ND` whose row i is token i % 97 of document i // 16."""
    n_rows = acts_ND.shape[0]
    rows_N = torch.arange(n_rows)
    tokens_N = rows_N % 97 if tokens_N is None else tokens_N
    writer = StoreWriter(path, {"model": model, "hook": hook, "ctx_len": 16}, acts_ND.shape[1],
                         "float32", shard_rows)
    writer.append(acts_ND, tokens_N, rows_N // 16, rows_N % 16 + 1, batch=0, first_row=0)
    writer.finish()
    return path


def write_harvest(root: Path, hooks: tuple[str, ...], widths: tuple[int, ...],
                  n_rows: int = 4096, model: str = "tiny", seed: int = 0) -> Path:
    """A multi-hook harvest `root/<hook>/` of planted features (`planted_acts`)."""
    for hook, acts_ND in zip(hooks, planted_acts(n_rows, widths, seed=seed)):
        write_site_store(root / hook, acts_ND, hook, model)
    return root
