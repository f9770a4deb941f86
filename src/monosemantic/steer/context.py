"""`load_steer_context`: what steering and attribution need from a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def load_max_act(run_dir: str | Path) -> Tensor | None:
    """Each feature's max activation [F] from the run's feature database; None without one."""
    from monosemantic.featuredb.reader import FeatureDB, FeatureDBError

    try:
        with FeatureDB(run_dir) as db:
            return torch.tensor([s["max_act"] for s in db.stats()], dtype=torch.float32)
    except FeatureDBError:
        return None


def load_steer_context(run_dir: str | Path, device: str = "auto", model: str | None = None
                       ) -> tuple[Any, Any, str, Tensor | None]:
    """(LoadedModel, SAE, hook name, max_act_F or None) of a training run; `max_act_F` is None
    when the run has no feature database (then only raw-unit edits work)."""
    from monosemantic.analysis.inspect import load_run_sae

    lm, sae, hook = load_run_sae(Path(run_dir), device, model)
    sae.requires_grad_(False)
    max_act_F = load_max_act(run_dir)
    if max_act_F is not None and max_act_F.numel() != sae.cfg.n_features:
        from monosemantic.errors import UserError

        raise UserError(f"the feature database of {run_dir} has {max_act_F.numel()} features but "
                        f"the SAE has {sae.cfg.n_features}: run `monosemantic analyze` again")
    return lm, sae, hook, max_act_F
