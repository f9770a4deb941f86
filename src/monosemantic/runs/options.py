"""`ModelOptions`: how a command that takes RUN opens it (the model to load, a pretrained SAE
folder's hooks), nested in its config as `model_options` with the short flags `--model`,
`--hook`, `--hook-out`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monosemantic.runs.rundir import RunDir


@dataclass
class ModelOptions:
    """The model to load instead of the run's, and the hooks of a pretrained SAE folder given
    as RUN."""

    model: str | None = None
    """Model spec to load instead of the one recorded with the SAE (e.g. the model moved); for
    a pretrained SAE folder that names none: the model it reads."""
    hook: str | None = None
    """With a pretrained SAE folder (SAELens, Gemma Scope, hf:OWNER/REPO/FOLDER) instead of a
    run: the hook point it reads (e.g. blocks.6.hook_resid_post), when the folder does not
    name it; docs/pretrained.md."""
    hook_out: str | None = None
    """With a pretrained SAELens transcoder folder: the hook point it writes (e.g.
    blocks.6.hook_mlp_out), when its cfg.json names none or to replace the one it names;
    docs/pretrained.md."""

    def find(self, run: str | Path) -> RunDir:
        """`run` as `RunDir.find` resolves it with these options (it need not be finished)."""
        return RunDir.find(run, self.model, self.hook, self.hook_out)

    def open(self, run: str | Path) -> RunDir:
        """`run` as `RunDir.open` opens it with these options (a finished run, or a pretrained
        SAE's run view)."""
        return RunDir.open(run, self.model, self.hook, self.hook_out)
