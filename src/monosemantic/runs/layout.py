"""`RunLayout`: where each file of a run folder lives (no checks, nothing read but the folder
listing and JSON files).

```
RUN/cfg.json               TrainConfig as resolved (`train`)
RUN/metrics.jsonl          one JSON object per log step
RUN/checkpoints/           latest checkpoint(s)
RUN/sae/                   the final SAE: SAELens layout + monosemantic.json (our metadata)
RUN/eval.json              `eval` (and RUN/density_histogram.png)
RUN/features.sqlite        `analyze`; `explain` / `score` add to it (RUN/llm_cache.sqlite)
RUN/neurons/               `neurons` (its default output)
RUN/findings/              `findings neurons RUN` (neurons.json, neurons.png)
RUN/acts/                  the run's own activation store, when harvested into it (the demo)
RUN/demo_cfg.json          the demo's options (the demo's folder is one run and its store)
RUN/sweep_record.json      `sweep`: the run's line of the sweep table (OUT/sweep.jsonl)
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monosemantic.errors import UserError
from monosemantic.featuredb.schema import DB_FILENAME


class RunLayout:
    """The files of one run folder by name; `RunDir` adds what they hold."""

    CFG = "cfg.json"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    SAE = "sae"
    EVAL = "eval.json"
    DENSITY_PLOT = "density_histogram.png"
    LLM_CACHE = "llm_cache.sqlite"
    NEURONS = "neurons"
    STORE = "acts"
    DEMO_CFG = "demo_cfg.json"
    SWEEP_RECORD = "sweep_record.json"
    # What a folder may already hold when `train` starts a run in it: the run's own store,
    # harvested into it, and the demo's options. Anything else is someone else's.
    BEFORE_TRAINING = (STORE, DEMO_CFG)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLayout) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ----- layout ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cfg_path(self) -> Path:
        return self.path / self.CFG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def sae_dir(self) -> Path:
        return self.path / self.SAE

    @property
    def eval_path(self) -> Path:
        return self.path / self.EVAL

    @property
    def density_plot_path(self) -> Path:
        return self.path / self.DENSITY_PLOT

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILENAME

    @property
    def neurons_dir(self) -> Path:
        return self.path / self.NEURONS

    @property
    def store_dir(self) -> Path:
        """Where the run's own store goes when it is harvested into the run (the demo's)."""
        return self.path / self.STORE

    @property
    def demo_cfg_path(self) -> Path:
        return self.path / self.DEMO_CFG

    @property
    def sae_cfg_path(self) -> Path:
        """The SAE's SAELens cfg.json (architecture, d_in, d_sae, k, ...)."""
        from monosemantic.sae.io import CFG_FILENAME

        return self.sae_dir / CFG_FILENAME

    @property
    def sae_weights_path(self) -> Path:
        from monosemantic.sae.io import WEIGHTS_FILENAME

        return self.sae_dir / WEIGHTS_FILENAME

    def not_before_training(self) -> list[str]:
        """Entries of the folder a run may not hold before `train` starts it (sorted)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name not in self.BEFORE_TRAINING)

    def check_trainable(self) -> None:
        """UserError unless the folder is a run (to resume) or may become one: missing, or
        holding only `BEFORE_TRAINING`."""
        others = [] if self.cfg_path.exists() else self.not_before_training()
        if others:
            allowed = " and ".join(self.BEFORE_TRAINING)
            listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise UserError(f"{self.path} is not a training run (no {self.CFG}) and holds "
                            f"{listed}: choose a new output directory (a new run's folder may "
                            f"hold only {allowed})")

    def read_json(self, path: Path) -> dict[str, Any]:
        """One of the run's JSON files as a dict; {} when missing or unreadable (a run still
        being written)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
