"""The offline default corpus: source, docstrings and docs of the installed Python packages and
the standard library of the running interpreter.

Site-packages can hold gigabytes, so nothing is read up front: candidate paths are listed
(names only), sorted so filesystem order does not matter, shuffled with the seed, and then read
one at a time as documents are consumed.
"""

from __future__ import annotations

import os
import random
import site
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from monosemantic.data.documents import CorpusConfig, CorpusReport
from monosemantic.errors import UserError

# Package metadata (RECORD, entry_points.txt, top_level.txt) and caches are not prose or code.
_SKIP_DIR_SUFFIXES = (".dist-info", ".egg-info")
_SKIP_DIRS = {"__pycache__", "node_modules"}
# Nested installs are listed through their own root, not again inside the standard library.
_NESTED_ROOTS = {"site-packages", "dist-packages"}


def default_roots() -> list[Path]:
    """The running interpreter's standard library and site-packages folders that exist."""
    paths = sysconfig.get_paths()
    candidates = [paths["stdlib"], paths["purelib"], paths["platlib"], *site.getsitepackages()]
    roots: list[Path] = []
    for raw in candidates:
        root = Path(raw).resolve()
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


def list_candidate_files(roots: list[Path], extensions: tuple[str, ...]) -> list[str]:
    """All files under `roots` whose name ends in one of `extensions`, sorted, without repeats."""
    found: set[str] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if _keep_dir(d)]
            found.update(os.path.join(dirpath, f) for f in filenames if f.endswith(extensions))
    return sorted(found)


def _keep_dir(name: str) -> bool:
    return not (
        name.startswith(".")
        or name in _SKIP_DIRS
        or name in _NESTED_ROOTS
        or name.endswith(_SKIP_DIR_SUFFIXES)
    )


def read_text_file(path: str | Path, report: CorpusReport, max_bytes: int = 0) -> str | None:
    """The file's text, or None after counting why it was skipped (too large, unreadable,
    binary-looking, not UTF-8). `max_bytes <= 0` means no size limit."""
    try:
        if max_bytes > 0 and os.path.getsize(path) > max_bytes:
            report.skip(f"larger than {max_bytes:,} bytes", str(path))
            return None
        raw = Path(path).read_bytes()
    except OSError as err:
        report.skip(f"unreadable: {err.strerror or type(err).__name__}", str(path))
        return None
    if b"\x00" in raw:
        report.skip("binary (contains NUL bytes)", str(path))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        report.skip("not UTF-8", str(path))
        return None
    report.files_read += 1
    return text.removeprefix("\ufeff")


def iter_local_python(cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    """(origin, text) for each readable candidate file, in seeded shuffled order."""
    roots = [Path(r).expanduser() for r in cfg.local_roots] if cfg.local_roots else default_roots()
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise UserError(f"local_roots: no such folder(s) {missing}; give existing folders or "
                        f"leave local_roots empty to read site-packages and the standard library")
    files = list_candidate_files(roots, tuple(cfg.extensions))
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(files)
    for path in files:
        text = read_text_file(path, report, cfg.max_file_bytes)
        if text is not None:
            yield path, text
