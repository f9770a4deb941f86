"""`monosemantic import-sae SRC OUT`: a pretrained SAE written as a run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from monosemantic.console import say
from monosemantic.pretrained.view import import_run, locate


@dataclass
class ImportSAEConfig:
    """Write a pretrained SAE (SAELens or Gemma Scope folder, or hf:OWNER/REPO/FOLDER) as a run
    folder that every command takes: OUT/sae/ in monosemantic's format with its model and hook,
    no activation store (analyze it with --text)."""

    source: str = field(metadata={"positional": True})
    """The SAE: a SAELens folder (cfg.json + sae_weights.safetensors), a Gemma Scope folder
    (params.npz or params.safetensors), or hf:OWNER/REPO/FOLDER to download one."""
    out: Path = field(metadata={"positional": True})
    """The run folder to write (new, or an empty folder)."""
    model: str | None = None
    """The model the SAE reads (a spec as load_model takes); needed when the folder names none,
    replaces the one it names."""
    hook: str | None = None
    """The hook point the SAE reads (e.g. blocks.6.hook_resid_post); needed when the folder
    names none, replaces the one it names."""
    hook_out: str | None = None
    """A transcoder's output hook (e.g. blocks.6.hook_mlp_out); needed when its folder names
    none (a SAELens cfg.json without hook_name_out, a Gemma Scope 1 folder, which it makes a
    transcoder), replaces the one it names."""
    check_model: bool = True
    """Check from the model's config (no weights loaded) that it has the hook (and a
    transcoder's output hook) at the SAE's width before writing anything."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)


def run_import_sae(cfg: ImportSAEConfig) -> Path:
    """CLI entry of `monosemantic import-sae`."""
    out = import_run(locate(cfg.source), cfg.out, cfg.model, cfg.hook, cfg.hook_out,
                     cfg.check_model)
    say(f"wrote the run folder {out} (analyze it with `monosemantic analyze {out} --text ...`)")
    return out
