"""`RunDir`: one training run's folder, what its SAE was trained on, and how it is opened and
loaded (its file layout: `runs.layout`).

Commands take the run folder or its sae/ folder, or a pretrained SAE (a SAELens or Gemma Scope
folder, or hf:OWNER/REPO/FOLDER) with the model and hook it reads: `find` / `open` resolve it
to a run view (`monosemantic.pretrained`), a run folder with no store. The heavy parts (torch,
the model, the store) are imported only by the methods that need them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from monosemantic.errors import UserError
from monosemantic.runs.layout import RunLayout

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from monosemantic.activations.reader import ActivationStore
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE
    from monosemantic.sae.clt import CrossLayerTranscoder


class RunModel(NamedTuple):
    """The model and SAE of a run, and the hook the SAE reads (a transcoder's input hook: the
    one to capture and encode; its output hook is `RunDir.hook_out`)."""

    lm: LoadedModel
    sae: SAE
    hook: str


class RunDir(RunLayout):
    """The folder of one training run. `RunDir(path)` only names its files (a run being
    created); `RunDir.find` checks a folder, `RunDir.open` a finished run."""

    # ----- opening --------------------------------------------------------------------------
    @classmethod
    def find(cls, path: str | Path, model: str | None = None, hook: str | None = None,
             hook_out: str | None = None) -> RunDir:
        """The run at `path`, or the run whose sae/ folder `path` is, or the run view of the
        pretrained SAE `path` names (`model` / `hook`: what it reads when it does not say;
        `hook_out`: what a transcoder writes). The run need not be finished (the browser serves
        a folder that holds only a feature database)."""
        from monosemantic.pretrained import foreign_view

        view = foreign_view(path, model, hook, hook_out)
        if view is not None:
            return cls(view)
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"run directory {path} does not exist: give the folder "
                            "`monosemantic train` wrote")
        if path.name == cls.SAE and _is_saved_sae(path):
            return cls(path.parent)
        if _is_older_demo(path):
            raise UserError(
                f"{path} is a demo folder written by an older monosemantic, whose run is "
                f"{path / cls.SAE} (give that path, e.g. `monosemantic serve {path / cls.SAE}`); "
                f"or delete {path} and run the demo again to get the current layout")
        return cls(path)

    @classmethod
    def open(cls, path: str | Path, model: str | None = None, hook: str | None = None,
             hook_out: str | None = None) -> RunDir:
        """A finished run (or its sae/ folder, or a pretrained SAE's run view, as `find`), with
        the metadata its SAE was saved with. `hook` / `hook_out`, given for a run, must be the
        run's."""
        run = cls.find(path, model, hook, hook_out)
        from monosemantic.sae.crosscoder import is_crosscoder_dir

        if is_crosscoder_dir(run.sae_dir) or is_crosscoder_dir(run.path):
            raise UserError(f"{path} is a crosscoder run (docs/crosscoders.md): evaluate it with "
                            "`monosemantic crosscoder-eval`; the other commands do not read "
                            "crosscoders yet")
        _ = run.metadata  # the UserError of an unfinished run or of another tool's SAE
        if hook is not None and hook != run.hook:
            raise UserError(f"{run.path} reads {run.hook!r}, not --hook {hook!r}: --hook is for "
                            "a pretrained SAE folder (leave it out for a run)")
        if hook_out is not None and hook_out != run.hook_out:
            raise UserError(f"{run.path} writes {run.hook_out!r}, not --hook-out {hook_out!r}: "
                            "--hook-out is for a pretrained transcoder folder (leave it out for "
                            "a run)")
        return run

    # ----- what the run was trained on --------------------------------------------------------
    @cached_property
    def metadata(self) -> dict[str, Any]:
        """monosemantic.json of the run's SAE; UserError when the run has no SAE yet or its SAE
        was saved by another tool."""
        from monosemantic.sae.io import METADATA_FILENAME, read_metadata

        if not self.sae_dir.is_dir():
            raise UserError(f"{self.path} has no sae/ folder: the training run has not finished "
                            "(resume it with the same `monosemantic train` command), or this is "
                            "not a run folder")
        meta = read_metadata(self.sae_dir)
        extra = meta.get("extra_metadata") or {}
        if not extra.get("model") or not extra.get("hook"):
            raise UserError(f"{self.sae_dir} has no {METADATA_FILENAME} with the model and hook "
                            "it was trained on (an SAE saved by another tool?): give that SAE "
                            "folder itself to the command (with --model and --hook when it does "
                            "not name them), or make a run of it with `monosemantic import-sae "
                            "SAE_FOLDER OUT`")
        return meta

    @property
    def extra(self) -> dict[str, Any]:
        """What the trainer recorded: model, hook, store, holdout_rows, training,
        train_config."""
        return self.metadata["extra_metadata"]

    @property
    def model(self) -> str:
        return str(self.extra["model"])

    @property
    def hook(self) -> str:
        """The hook the dictionary reads: what is captured and encoded into feature
        activations (a transcoder's input site)."""
        return str(self.extra["hook"])

    @property
    def hook_out(self) -> str | None:
        """A transcoder's target hook (it reads `hook`); None for an SAE."""
        hook_out = self.extra.get("hook_out")
        return None if hook_out is None else str(hook_out)

    @property
    def decoder_hook(self) -> str:
        """The hook whose directions the decoder rows are (what steering edits, logit effects
        and decoder neighbours refer to): `hook_out` for a transcoder, `hook` for an SAE."""
        return self.hook_out or self.hook

    def target_store(self, override: str | Path | None = None) -> ActivationStore:
        """A transcoder's target store: the one it trained on, or with `override` (the input
        store given with --store) the sibling folder named after `hook_out` (a multi-hook
        harvest's layout); checked to hold `hook_out` with the same number of rows."""
        from monosemantic.activations import ActivationStore

        if self.hook_out is None:
            raise UserError(f"{self.path} holds an SAE, not a transcoder: it has no target store")
        path = (Path(override).parent / self.hook_out if override is not None
                else Path(self.extra["store_out"]))
        if not path.is_dir():
            raise UserError(f"the target store {path} does not exist (moved?): give the input "
                            "store with --store; its harvest folder must also hold "
                            f"{self.hook_out}/")
        store = ActivationStore(path)
        if store.hook != self.hook_out:
            raise UserError(f"store {path} holds {store.hook!r}, not the transcoder's target "
                            f"{self.hook_out!r}")
        return store

    @property
    def store_path(self) -> Path | None:
        """The activation store the SAE was trained on; None for streamed training."""
        store = self.extra.get("store")
        return None if store is None else Path(store)

    @property
    def holdout_rows(self) -> range | None:
        """The store rows held out from training; None for streamed training."""
        rows = self.extra.get("holdout_rows")
        return None if rows is None else range(int(rows[0]), int(rows[1]))

    @property
    def pretrained(self) -> dict[str, Any] | None:
        """Where a pretrained SAE's run view came from (source, layout, ...); None for a run
        trained here."""
        made = self.extra.get("pretrained")
        return dict(made) if made else None

    @property
    def training(self) -> dict[str, Any]:
        """The trainer's closing figures (final train metrics, dead fraction, ...)."""
        return dict(self.extra.get("training") or {})

    @property
    def d_in(self) -> int:
        return int(self.metadata["sae_config"]["d_in"])

    @property
    def n_features(self) -> int:
        return int(self.metadata["sae_config"]["n_features"])

    # ----- loading --------------------------------------------------------------------------
    def load_sae(self, device: str | torch.device = "cpu") -> SAE:
        from monosemantic.sae import load_sae

        _ = self.metadata  # a clearer error than load_sae's for an unfinished run
        return load_sae(self.sae_dir, device=device)

    @property
    def is_clt(self) -> bool:
        """Whether the run's dictionary is a cross-layer transcoder (docs/clt.md)."""
        return self.metadata.get("kind") == "cross_layer_transcoder"

    def load_clt(self, device: str | torch.device = "cpu") -> CrossLayerTranscoder:
        """The run's cross-layer transcoder (raw activations; `encode(layer, x)`,
        `decode_to(source, target, acts)`, `bias(target)`, `predict`)."""
        from monosemantic.sae.clt_io import load_clt

        _ = self.metadata  # a clearer error than load_clt's for an unfinished run
        return load_clt(self.sae_dir, device=device)

    def load_model(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                   spec: str | None = None) -> LoadedModel:
        """The run's model (or `spec` instead, e.g. when the model moved), in `dtype`
        (default float32)."""
        import torch

        from monosemantic.models import load_model

        lm = load_model(spec or self.model, device=str(device),
                        dtype=torch.float32 if dtype is None else dtype)
        sites = [(self.hook, self.d_in, "reads")]
        if self.hook_out is not None:
            sites.append((self.hook_out, int(self.metadata["sae_config"]["d_out"]), "writes"))
        for hook, expected, role in sites:
            width = lm.hook_point(hook).width  # an unknown hook: UserError listing valid ones
            if width != expected:
                raise UserError(f"{lm.spec} has width {width} at {hook}; the SAE of {self.path} "
                                f"{role} width {expected}: give the model it was trained on"
                                f"{' with --model' if spec is None else ' as --model'}")
        return lm

    def load(self, device: str = "auto", model: str | None = None,
             lm: LoadedModel | None = None) -> RunModel:
        """Model, SAE (frozen) and hook, on one device; `lm` is used instead of loading the
        model when given, `model` is a spec to load instead of the recorded one."""
        from monosemantic.devices import resolve_device

        dev = str(resolve_device(device))
        sae = self.load_sae(dev)
        sae.requires_grad_(False)
        return RunModel(lm if lm is not None else self.load_model(dev, spec=model), sae,
                        self.hook)

    def store(self, override: str | Path | None = None,
              alternative: str | None = None) -> ActivationStore:
        """The activation store the SAE was trained on (or `override`, the CLI's --store),
        checked to hold the SAE's hook and width and its held-out rows. `alternative` ends the
        message of a missing store (what else the command can do without one)."""
        from monosemantic.activations.reader import ActivationStore

        path = Path(override) if override is not None else self.store_path
        if override is None and path is not None and not path.exists() \
                and self.store_dir.is_dir():
            # A store harvested into the run (the demo's) is recorded relative to the working
            # directory of `train`; it moves with the run, so it is found from any directory.
            path = self.store_dir
        other = f", or {alternative}" if alternative else ""
        if path is None and self.pretrained is not None:
            raise UserError(f"{self.path} is the pretrained SAE {self.pretrained['source']}, "
                            "which comes with no activation store: give a store of its model and "
                            f"hook with --store{other}")
        if path is None:
            raise UserError(f"{self.path} was trained on streamed activations (no store): give "
                            f"an activation store of its model and hook with --store{other}")
        if not path.exists():
            raise UserError(f"activation store {path} does not exist (moved?): give its new "
                            f"path with --store{other}")
        store = ActivationStore(path)
        if store.hook != self.hook or store.d != self.d_in:
            raise UserError(f"store {path} holds {store.hook!r} (width {store.d}); the SAE was "
                            f"trained on {self.hook!r} (width {self.d_in}): give the store it "
                            "was trained on with --store")
        rows = self.holdout_rows
        if rows is not None and self.store_path is not None and rows.stop > store.n_rows:
            raise UserError(f"held-out rows [{rows.start}, {rows.stop}) do not fit the store's "
                            f"{store.n_rows:,} rows: is --store the store this SAE was trained "
                            "on?")
        return store

    def max_act_F(self) -> Tensor | None:
        """Each feature's largest activation [F] from the run's feature database; None without
        one (then only raw-unit edits and thresholds work)."""
        import torch

        from monosemantic.featuredb.reader import FeatureDB, FeatureDBError

        try:
            with FeatureDB(self.db_path) as db:
                stats = db.stats()
        except FeatureDBError:
            return None
        if len(stats) != self.n_features:
            raise UserError(f"the feature database of {self.path} has {len(stats)} features but "
                            f"the SAE has {self.n_features}: run `monosemantic analyze "
                            f"{self.path}` again")
        return torch.tensor([s["max_act"] for s in stats], dtype=torch.float32)


def feature_db_path(run_or_db: str | Path) -> Path:
    """The feature database of a run folder (or its sae/ folder); a database file as is."""
    path = Path(run_or_db)
    return path if path.is_file() else RunDir.find(path).db_path


def _is_saved_sae(path: Path) -> bool:
    """Whether `path` holds a saved SAE (or a cross-layer transcoder)."""
    from monosemantic.sae.clt_io import CLT_WEIGHTS_FILENAME
    from monosemantic.sae.io import WEIGHTS_FILENAME

    return (path / WEIGHTS_FILENAME).is_file() or (path / CLT_WEIGHTS_FILENAME).is_file()


def _is_older_demo(path: Path) -> bool:
    """The demo folder of earlier versions: OUT/acts and the run OUT/sae, its SAE OUT/sae/sae."""
    return (not (path / RunDir.CFG).exists() and (path / RunDir.SAE / RunDir.CFG).is_file()
            and (path / RunDir.SAE / RunDir.SAE).is_dir())
