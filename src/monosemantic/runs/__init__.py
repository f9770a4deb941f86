"""Runs: a training run's folder (`RunDir`; its file layout in `runs.layout`), the model and
SAE it loads (`RunModel`), and the options every command that takes a run shares
(`ModelOptions`: `--model`, `--hook`, `--hook-out`)."""

from monosemantic.runs.layout import RunLayout
from monosemantic.runs.options import ModelOptions
from monosemantic.runs.rundir import RunDir, RunModel, feature_db_path

__all__ = ["ModelOptions", "RunDir", "RunLayout", "RunModel", "feature_db_path"]
