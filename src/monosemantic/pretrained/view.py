"""A pretrained SAE as a run folder: `RUN/sae/` in our format, its model and hook recorded, no
store, so that every command that takes a run works on it unchanged.

`import_run(source, out, model, hook, hook_out)` writes one where the user says
(`import-sae`); `foreign_view(path, model, hook, hook_out)` is what `RunDir.find` calls for a
path that is not a run:
for another tool's folder (or `hf:...`) it returns a view folder under `views_root()`, made on
first use and reused after, so `analyze SRC --hook H` and then `serve SRC --hook H` share one
features.sqlite and the source folder is never written to. A transcoder's view also records
the hook it writes (`hook_out`: a SAELens cfg.json's `hook_name_out`, a Gemma Scope 2
config.json's `hf_hook_point_out`, or --hook-out, which also makes a Gemma Scope 1 folder a
transcoder; its pre-MLP norm gain is folded in from the model, `gemma_scope.fold_pre_mlp_gain`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.pretrained.hub import download_folder, is_hub_spec
from monosemantic.pretrained.layout import foreign_layout

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel
    from monosemantic.pretrained.formats import FolderInfo
    from monosemantic.sae import SAE

VIEWS_ENV = "MONOSEMANTIC_PRETRAINED_DIR"
"""Environment variable: where the run views of pretrained SAEs go (default: the user cache
folder's `monosemantic/pretrained`)."""
SAE_DIR = "sae"  # RunDir.SAE (runs imports this package lazily; no import cycle)


@dataclass(frozen=True)
class Source:
    """A pretrained SAE as the user named it, and its local folder."""

    spec: str
    """What the user gave (a folder, or hf:OWNER/REPO/FOLDER)."""
    folder: Path
    """The local folder (the download of a hub spec)."""


def is_foreign(path: str | Path) -> bool:
    """Whether `path` names a pretrained SAE (hub spec or another tool's folder), not a run."""
    return is_hub_spec(path) or foreign_layout(Path(path)) is not None


def locate(spec: str | Path) -> Source:
    """The local folder of `spec`, downloaded first for a hub spec."""
    text = str(spec)
    if is_hub_spec(text):
        return Source(text, download_folder(text).resolve())
    return Source(text, Path(text).expanduser().resolve())


def views_root() -> Path:
    configured = os.environ.get(VIEWS_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("monosemantic")) / "pretrained"


def foreign_view(path: str | Path, model: str | None, hook: str | None,
                 hook_out: str | None = None) -> Path | None:
    """The run view of the pretrained SAE `path` names (made now if new); None when `path` is
    not one (a run folder: the caller opens it as such). `hook_out`: a transcoder's output hook
    instead of the one its folder names."""
    if not is_foreign(path):
        return None
    from monosemantic.pretrained.formats import describe

    source = locate(path)
    info = describe(source.folder)
    hook = _chosen(hook, info.hook, "hook", source, info.transcoder)
    hook_out = _chosen_hook_out(hook_out, info, source)
    view = views_root() / _view_name(source.folder, hook, hook_out)
    if (view / SAE_DIR).is_dir():
        _check_unchanged(view, info.weights)
        return view
    try:
        import_run(source, view, model, hook, hook_out, quiet_if_exists=True)
    except UserError:
        if not (view / SAE_DIR).is_dir():
            raise
        return view  # made meanwhile by another process (a rank of the same command)
    say(f"{source.spec}: pretrained SAE viewed as the run folder {view} (its features.sqlite "
        "goes there; the source folder is not written to)")
    return view


def import_run(source: Source, out: Path, model: str | None, hook: str | None,
               hook_out: str | None = None, check_model: bool = True,
               quiet_if_exists: bool = False) -> Path:
    """Write the run folder `out` for the pretrained SAE at `source` (all or nothing)."""
    from monosemantic.pretrained.formats import describe, read_sae
    from monosemantic.sae.io import save_sae

    info = describe(source.folder)
    model = _chosen(model, info.model, "model", source)
    hook = _chosen(hook, info.hook, "hook", source, info.transcoder)
    hook_out = _chosen_hook_out(hook_out, info, source)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty: choose a new output folder")
    sae = read_sae(info, transcoder=hook_out is not None)
    if check_model:
        check_hook(model, hook, int(sae.W_enc_DF.shape[0]), hook_out, int(sae.W_dec_FD.shape[1]))
    stat = info.weights.stat()
    made: dict[str, Any] = {"source": source.spec, "folder": str(source.folder),
                            "layout": info.layout, "weights": str(info.weights),
                            "weights_size": stat.st_size, "weights_mtime_ns": stat.st_mtime_ns}
    if info.gemma_scope_1 and hook_out is not None:
        _fold_gain(sae, model, hook)
        made["input_gain_folded"] = True
    extra: dict[str, Any] = {"model": model, "hook": hook, "hook_out": hook_out, "store": None,
                             "holdout_rows": None, "pretrained": made}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        save_sae(sae, tmp / SAE_DIR, extra, fold_decoder_norms=False)
        try:
            if out.is_dir():
                out.rmdir()  # the empty folder the user named
            os.rename(tmp, out)
        except OSError:
            # Another process (a rank of the same command) made the same view first.
            if not (quiet_if_exists and (out / SAE_DIR).is_dir()):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def check_hook(model: str, hook: str, d_in: int, hook_out: str | None = None,
               d_out: int | None = None) -> None:
    """UserError when `model`'s family has no hook `hook` or its width there is not `d_in`
    (and the same for a transcoder's `hook_out` and `d_out`). Reads the model's config only; a
    model whose config cannot be read is checked when the model is loaded."""
    from monosemantic.models import load_model_layout

    try:
        layout = load_model_layout(model)
    except UserError as err:
        say(f"note: hook {hook!r} not checked now ({err}); it is checked when the model loads")
        return
    _check_width(layout, model, hook, d_in, "the SAE reads", "--hook")
    if hook_out is not None and d_out is not None:
        _check_width(layout, model, hook_out, d_out, "the transcoder writes", "--hook-out")


def _check_width(layout: LoadedModel, model: str, hook: str, width_expected: int, role: str,
                 option: str) -> None:
    if not hook.startswith("blocks."):
        try:
            layout.model.get_submodule(hook)
        except AttributeError:
            layout.hook_point(hook)  # raises the UserError that lists the valid names
        return  # a raw module's width is measured by a forward, when the model loads
    width = layout.hook_point(hook).width
    if width != width_expected:
        raise UserError(f"{model} has width {width} at {hook}, {role} width {width_expected}: "
                        f"is {option} (or --model) the one the SAE was trained on?")


def _fold_gain(sae: SAE, model: str, hook: str) -> None:
    """Fold the model's pre-MLP norm gain into a Gemma Scope 1 transcoder (loads the model)."""
    from monosemantic.models import load_model, load_model_layout
    from monosemantic.pretrained.gemma_scope import fold_pre_mlp_gain, pre_mlp_norm

    try:
        layout = load_model_layout(model)
    except UserError:
        layout = None  # config unreadable now: the loaded model is checked below
    if layout is not None:
        pre_mlp_norm(layout, hook)  # refuse before loading the weights
    say(f"loading {model} to fold its pre-MLP norm gain at {hook} into the Gemma Scope 1 "
        "transcoder's encoder (it was trained on the norm's output without its gain)")
    fold_pre_mlp_gain(sae, load_model(model), hook)


def _chosen(given: str | None, named: str | None, what: str, source: Source,
            transcoder: bool | None = False) -> str:
    """The --model / --hook given, else the one the folder names, else a UserError."""
    if given:
        if named and named != given:
            say(f"{source.spec}: using --{what} {given} (the folder names {named})")
        return given
    if named:
        return named
    if what == "hook" and transcoder:
        raise UserError(f"{source.spec} is a transcoder that does not say which hooks it reads "
                        "and writes (a Gemma Scope 1 folder names none): give both, e.g. "
                        "--hook blocks.6.hook_mlp_in --hook-out blocks.6.hook_mlp_out (the MLP's "
                        "input after its pre-norm, and the MLP sublayer's output)")
    example = ("--hook blocks.6.hook_resid_post" if what == "hook" else "--model gemma-3-270m")
    raise UserError(f"{source.spec} does not say which {what} the SAE reads: give it with "
                    f"--{what} (e.g. {example}; analyze, serve, steer, attribute and eval take "
                    f"it), or make a run folder of it with `monosemantic import-sae "
                    f"{source.spec} OUT --{what} ...` for the other commands")


def _chosen_hook_out(given: str | None, info: FolderInfo, source: Source) -> str | None:
    """A transcoder's output hook: --hook-out, else the one its folder names, else a
    UserError; None for an SAE (which --hook-out is refused for)."""
    if info.transcoder is None:  # the folder does not say: --hook-out makes it a transcoder
        return given or None
    if not info.transcoder:
        if given:
            raise UserError(f"{source.spec} holds an SAE, not a transcoder: --hook-out is for a "
                            "transcoder folder (leave it out)")
        return None
    if given:
        if info.hook_out and info.hook_out != given:
            say(f"{source.spec}: using --hook-out {given} (the folder names {info.hook_out})")
        return given
    if info.hook_out:
        return info.hook_out
    named = ("no hook_name_out in its cfg.json" if info.layout == "saelens"
             else "a Gemma Scope 1 folder names none")
    raise UserError(f"{source.spec} is a transcoder that does not say which hook it writes "
                    f"({named}): give it with --hook-out (e.g. --hook-out "
                    "blocks.6.hook_mlp_out)")


def _view_name(folder: Path, hook: str, hook_out: str | None = None) -> str:
    """A readable, unique folder name per (source folder, hook[, output hook])."""
    # An SAE's name leaves hook_out out, so views made before transcoders were read are kept.
    key = f"{folder}\n{hook}" if hook_out is None else f"{folder}\n{hook}\n{hook_out}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.name)[:60] or "sae"
    return f"{slug}-{digest}"


def _check_unchanged(view: Path, weights: Path) -> None:
    """UserError when the source's weights changed since the view was made."""
    from monosemantic.sae.io import read_metadata

    made = (read_metadata(view / SAE_DIR).get("extra_metadata") or {}).get("pretrained") or {}
    stat = weights.stat()
    if (made.get("weights_size"), made.get("weights_mtime_ns")) != (stat.st_size,
                                                                    stat.st_mtime_ns):
        raise UserError(f"{weights} changed since its run view {view} was made: delete {view} "
                        "(and with it the analysis there) to view the new weights")
