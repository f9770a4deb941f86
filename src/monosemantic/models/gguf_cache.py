"""De-quantized GGUF models cached as plain HF directories (safetensors + config + tokenizer).

De-quantizing a GGUF file takes tens of seconds to minutes; the result is written once under
`cache_root()/models/<label>-<key>/` and later loads read safetensors (seconds). The key hashes
the GGUF's identity, the transformers version and our cache format, so a different file or a
transformers upgrade never reuses a stale cache. The directory is built in a temp dir beside it,
fsynced, then renamed into place: a crash leaves no half cache, only a temp dir that the next
build ignores. A lock file keeps two processes from de-quantizing the same file at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import platformdirs

from monosemantic.errors import UserError
from monosemantic.fsutil import fsync_tree

CACHE_ENV = "MONOSEMANTIC_CACHE"
_FORMAT = 1  # bump when the cache layout changes
_MARKER = "monosemantic_cache.json"
_SAMPLE_BYTES = 8 << 20


def cache_root() -> Path:
    """`$MONOSEMANTIC_CACHE`, else the per-user cache dir (e.g. ~/.cache/monosemantic)."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("monosemantic"))


def gguf_fingerprint(path: Path) -> str:
    """SHA-256 over the file size and 8 MiB samples at its start, middle and end.

    Sampling keeps repeat loads of multi-GB files fast; GGUF headers (metadata) and tensor data
    make two different files agree on all three samples and the size only by construction.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        middle, tail = max(0, size // 2 - _SAMPLE_BYTES // 2), max(0, size - _SAMPLE_BYTES)
        for offset in sorted({0, middle, tail}):
            f.seek(offset)
            digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def cache_dir_for(label: str, identity: dict) -> Path:
    """Where the de-quantized model for `identity` (the GGUF's id) lives, built or not."""
    import transformers

    key_data = {"identity": identity, "transformers": transformers.__version__, "format": _FORMAT}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:64]
    return cache_root() / "models" / f"{safe_label}-{key}"


def is_complete(directory: Path) -> bool:
    """True when `directory` is a finished cache (the marker is written last, before rename)."""
    return (directory / _MARKER).is_file()


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the atomic rename still keeps caches whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def hf_bars_follow_quiet() -> Iterator[None]:
    """Silence transformers' own progress bars while MONOSEMANTIC_QUIET is set."""
    from transformers.utils import logging as hf_logging

    quiet = os.environ.get("MONOSEMANTIC_QUIET", "") not in ("", "0")
    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet and was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def ensure_dequantized(label: str, identity: dict, get_gguf: Callable[[Path], Path]) -> Path:
    """The cache directory for `identity`, building it if needed.

    `get_gguf(scratch_dir)` returns the GGUF path (it may write the file into `scratch_dir`,
    which is deleted afterwards).
    """
    target = cache_dir_for(label, identity)
    if is_complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the model cache dir {target.parent} ({err}); set "
                        f"{CACHE_ENV} to a writable directory") from err
    with _build_lock(target):
        if is_complete(target):  # another process built it while we waited
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            out = scratch / "model"
            _dequantize_to(get_gguf(scratch), out)
            (out / _MARKER).write_text(json.dumps({"label": label, "identity": identity}, indent=2))
            fsync_tree(out)
            if target.exists():  # an incomplete leftover (no marker) from an older layout
                shutil.rmtree(target)
            os.rename(out, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _dequantize_to(gguf: Path, out: Path) -> None:
    """Load `gguf` fully de-quantized in float32 and save it as a plain HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from monosemantic.progress import progress

    with (progress(total=2, desc=f"de-quantizing {gguf.name} (once; cached)", unit="step") as bar,
          hf_bars_follow_quiet()):
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
        bar.update(1)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        bar.update(1)
    # The weights are plain float tensors now; drop the GGUF quantizer so save_pretrained
    # writes an ordinary (non-quantized) checkpoint that loads without the GGUF file.
    # transformers sets both attributes per instance on quantized loads; neither the model nor
    # the config class declares them, so the type checker cannot know them.
    model.hf_quantizer = None  # pyright: ignore[reportArgumentType]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # pyright: ignore[reportAttributeAccessIssue]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
