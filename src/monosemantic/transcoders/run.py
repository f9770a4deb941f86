"""`monosemantic transcoders OUT --store HARVEST --layers ...`: a transcoder set.

Each layer is an ordinary transcoder run `OUT/layer_LL/`, trained one after another: a
trained layer is skipped, an interrupted one resumes from its checkpoint (the trainer's own
resume), a trained but unevaluated one is evaluated (`monosemantic eval`, its eval.json).
Then every transcoder of the set is spliced in the same forward, on the same fresh contexts as
each layer's own spliced loss (`evals.spliced_loss_all`), against zero-ablating all of those
MLP outputs at once (`report`).
"""

from __future__ import annotations

import itertools
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.console import redirected, say
from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import RunDir
from monosemantic.sweep.point import is_trained
from monosemantic.transcoders.config import (
    SET_CFG,
    SET_EVAL,
    SET_FILE,
    TranscoderSetConfig,
    hook_in,
    hook_out,
    layer_dir_name,
    save_set_config,
    train_config,
)
from monosemantic.transcoders.report import (
    ALL_REPLACED_FORMULA,
    format_all_replaced,
    format_set_table,
    layer_figures,
    write_set_eval,
    write_set_file,
)

if TYPE_CHECKING:
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.models import LoadedModel

__all__ = ["TranscoderSetConfig", "run_transcoders"]


def run_transcoders(cfg: TranscoderSetConfig) -> dict[str, Any]:
    """Train and evaluate every layer of the set not yet finished, write OUT/transcoders.json
    and OUT/transcoders_eval.json, print the table; returns transcoders_eval.json's data."""
    from monosemantic.train.config import validate

    model, layers = check_set(cfg)
    for layer in layers:
        validate(train_config(cfg, layer))
        RunDir(Path(cfg.out) / layer_dir_name(layer)).check_trainable()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_set_config(cfg)
    todo = [layer for layer in layers if not _finished(out, layer)]
    say(f"transcoders {out}: {len(layers)} layers ({_layers_text(layers)}), "
        f"{len(layers) - len(todo)} already finished")
    lm = _load_model(cfg, layers) if todo and cfg.loss_contexts > 0 else None
    with progress(total=len(layers), desc="transcoders", unit="layer",
                  initial=len(layers) - len(todo)) as bar:
        for layer in todo:
            _make_layer(cfg, layer, lm)
            write_set_file(out, model, [la for la in layers if _finished(out, la)])
            bar.update(1)
    write_set_file(out, model, layers)
    per_layer = {str(la): layer_figures(RunDir.open(out / layer_dir_name(la))) for la in layers}
    data: dict[str, Any] = {"version": 1, "model": model, "store": str(Path(cfg.store)),
                            "layers": layers, "per_layer": per_layer, "all_replaced": None}
    say("")
    say(format_set_table(per_layer))
    previous = RunDir(out).read_json(out / SET_EVAL)
    if cfg.loss_contexts > 0 and not todo and previous.get("layers") == layers \
            and previous.get("all_replaced"):
        # Nothing changed since it was measured (the options are checked to be the same).
        data.update({k: previous.get(k) for k in ("all_replaced", "sizes", "formulas")})
        say(format_all_replaced(data["all_replaced"], len(layers)))
    elif cfg.loss_contexts > 0:
        lm = lm or _load_model(cfg, layers)
        loss, sizes = all_replaced_loss(cfg, lm, layers)
        data.update(all_replaced=loss, sizes=sizes, formulas={"all_replaced": ALL_REPLACED_FORMULA})
        say(format_all_replaced(loss, len(layers)))
    path = write_set_eval(out, data)
    say(f"\nwrote {out / SET_FILE} and {path}")
    first = shlex.quote(str(out / layer_dir_name(layers[0])))
    say(f"next: monosemantic graph {shlex.quote(str(out))} --prompt 'The capital of France is'"
        "   (an attribution graph through the set: docs/circuits.md)")
    say(f"      monosemantic analyze {first}   (one layer's features; every layer is a run)")
    return data


def _finished(out: Path, layer: int) -> bool:
    run = RunDir(out / layer_dir_name(layer))
    return is_trained(run) and run.eval_path.is_file()


def _make_layer(cfg: TranscoderSetConfig, layer: int, lm: LoadedModel | None) -> None:
    """Train (or resume) one layer's run unless trained, then evaluate it."""
    from monosemantic.evals.report import EvalConfig, run_eval
    from monosemantic.train.trainer import train

    run = RunDir(Path(cfg.out) / layer_dir_name(layer))
    if not is_trained(run):
        say(f"layer {layer}: training {run.path} ({hook_in(layer)} -> {hook_out(layer)})")
        start = time.monotonic()
        train(train_config(cfg, layer))
        say(f"layer {layer}: trained in {time.monotonic() - start:,.0f} s")
    start = time.monotonic()
    eval_cfg = EvalConfig(run=run.path, n_tokens=cfg.eval_tokens, n_contexts=cfg.loss_contexts,
                          batch_size=cfg.loss_batch_size, dense_threshold=cfg.train.dense_threshold,
                          device=cfg.train.device, plot=False)
    with redirected(None):  # the set prints its own table
        metrics = run_eval(eval_cfg, lm)["metrics"]
    say(f"layer {layer}: evaluated in {time.monotonic() - start:,.0f} s: variance explained "
        f"{metrics['variance_explained']:.4f}, loss recovered "
        f"{metrics.get('loss_recovered', float('nan')):.4f}")


def all_replaced_loss(cfg: TranscoderSetConfig, lm: LoadedModel,
                      layers: list[int]) -> tuple[dict[str, Any], dict[str, int]]:
    """The loss with every layer's transcoder spliced in at once, on the fresh contexts each
    layer's eval used; and the sizes (contexts, tokens)."""
    from monosemantic.data import batch_contexts
    from monosemantic.evals.evaluate import fresh_contexts, unspliced_ids
    from monosemantic.evals.spliced import Splice, spliced_loss_all

    device = str(lm.device)
    splices = [Splice(RunDir.open(Path(cfg.out) / layer_dir_name(layer)).load_sae(device),
                      hook_out(layer), hook_in(layer)) for layer in layers]
    store = _store(cfg, layers[0])
    contexts = list(itertools.islice(fresh_contexts(store, lm.tokenizer, cfg.loss_contexts),
                                     cfg.loss_contexts))
    if not contexts:
        raise UserError("the store's corpus has no text left after the harvested documents, so "
                        "there are no fresh contexts: pass --loss-contexts 0, or harvest fewer "
                        "tokens than the corpus holds")
    n_tokens = sum(int(c.tokens.numel()) for c in contexts)
    say(f"splicing all {len(layers)} transcoders in at once ({len(contexts)} contexts)")
    with progress(total=n_tokens, desc="all replaced", unit="tok") as bar:
        loss = spliced_loss_all(lm, splices, batch_contexts(contexts, cfg.loss_batch_size),
                                keep_token_ids=unspliced_ids(store, lm), on_batch=bar.update)
    return loss, {"spliced_contexts": len(contexts), "spliced_tokens": n_tokens}


def check_set(cfg: TranscoderSetConfig) -> tuple[str, list[int]]:
    """The store's model spec and the layers, once the store holds both hooks of each."""
    from monosemantic.models import load_model_layout
    from monosemantic.models.hook_points import parse_layers

    store = Path(cfg.store)
    if not store.is_dir():
        raise UserError(f"activation store {store} does not exist: harvest one with "
                        f"`{_harvest_command(cfg, '<MODEL>', cfg.layers)}`")
    if (store / "manifest.json").is_file():
        raise UserError(f"{store} is a single-hook store; the set needs one harvest of every "
                        f"layer's hook_mlp_in and hook_mlp_out: "
                        f"`{_harvest_command(cfg, '<MODEL>', cfg.layers)}`")
    model = _store_model(store)
    layers = parse_layers(cfg.layers, load_model_layout(model).n_layers, what="--layers")
    missing = [hook for layer in layers for hook in (hook_in(layer), hook_out(layer))
               if not (store / hook).is_dir()]
    if missing:
        listed = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more"
                                            if len(missing) > 6 else "")
        command = _harvest_command(cfg, model, cfg.layers)
        raise UserError(f"{store} lacks the stores of {listed}: harvest every layer of the set "
                        f"in one pass into a new folder, `{command}`, and pass it with --store")
    if Path(cfg.out).is_dir() and not (Path(cfg.out) / SET_CFG).is_file():
        others = sorted(p.name for p in Path(cfg.out).iterdir() if not p.name.startswith("."))
        if others:
            raise UserError(f"{cfg.out} is not a transcoder set (no {SET_CFG}) and holds "
                            f"{', '.join(others[:5])}: choose a new or empty folder")
    return model, layers


def _store_model(store: Path) -> str:
    """The model spec of a multi-hook harvest (any of its stores records it)."""
    from monosemantic.activations.reader import ActivationStore

    for child in sorted(store.iterdir()):
        if (child / "manifest.json").is_file():
            return ActivationStore(child, verify="size").model
    raise UserError(f"{store} holds no activation store: give the folder `monosemantic "
                    "harvest --hooks ... --out FOLDER` wrote")


def _store(cfg: TranscoderSetConfig, layer: int) -> ActivationStore:
    from monosemantic.activations.reader import ActivationStore

    return ActivationStore(Path(cfg.store) / hook_in(layer), verify="size")


def _load_model(cfg: TranscoderSetConfig, layers: list[int]) -> LoadedModel:
    """The store's model, as each layer's eval would load it (the harvest's dtype)."""
    from monosemantic.devices import resolve_device
    from monosemantic.models import load_model

    store = _store(cfg, layers[0])
    return load_model(store.model, device=str(resolve_device(cfg.train.device)),
                      dtype=store.model_dtype)


def _harvest_command(cfg: TranscoderSetConfig, model: str, layers: str) -> str:
    which = "*" if layers.strip().lower() in ("all", "*") else str(layers).replace(" ", "")
    hooks = " ".join(shlex.quote(f"blocks.{which}.{h}") for h in ("hook_mlp_in", "hook_mlp_out"))
    return (f"monosemantic harvest --model {shlex.quote(model)} --hooks {hooks} "
            f"--out {shlex.quote(str(cfg.store) + '_set')}")


def _layers_text(layers: list[int]) -> str:
    return ", ".join(str(layer) for layer in layers)

