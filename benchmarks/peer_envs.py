"""Separate virtual environments for the peer libraries the benchmarks compare against.

Each peer (SAELens, EleutherAI's sparsify) lives in its own venv under `benchmarks/.venvs/`, so
its dependency pins never touch the project's venv. The venv gets the project's torch version
first (pip takes the local CPU wheel); the peer package is then checked with `pip install
--dry-run --report` so that nothing would replace torch or pull CUDA packages before it is
installed for real. An existing venv that already has the package is reused as is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from monosemantic.errors import UserError

VENVS_DIR = Path(__file__).resolve().parent / ".venvs"

# Distributions whose appearance in a peer's install plan means pip wants another torch build.
_FORBIDDEN_EXACT = frozenset({"torch", "triton", "torchvision", "torchaudio"})
_FORBIDDEN_PREFIXES = ("nvidia-",)


@dataclass(frozen=True)
class PeerSpec:
    """One peer library and how to install it."""

    name: str
    """Short name, also the venv's folder under benchmarks/.venvs/."""
    package: str
    """PyPI distribution to install (and whose version is reported)."""
    label: str
    """Name printed in result tables."""


@dataclass
class PeerEnv:
    """A ready peer venv."""

    spec: PeerSpec
    """Which peer this venv holds."""
    python: Path
    """The venv's interpreter."""
    versions: dict[str, str] = field(default_factory=dict)
    """Installed versions of the peer package and torch."""
    install_seconds: float | None = None
    """Wall time spent creating the venv in this run; None when an existing venv was reused."""


PEERS = {
    "saelens": PeerSpec(name="saelens", package="sae-lens", label="SAELens"),
    # The PyPI name `sparsify` is an unrelated (deprecated) Neural Magic project.
    "sparsify": PeerSpec(name="sparsify", package="eai-sparsify", label="sparsify (EleutherAI)"),
}


def project_torch_pin() -> str:
    """`torch==X.Y.Z` matching the project's own torch, without its local tag (`+cpu`)."""
    return "torch==" + metadata.version("torch").split("+")[0]


def ensure_env(spec: PeerSpec, root: Path = VENVS_DIR, torch_pin: str | None = None) -> PeerEnv:
    """Return the peer's venv, creating it (torch first, then the package) if it is missing."""
    venv_dir = root / spec.name
    python = venv_dir / "bin" / "python"
    install_seconds = None
    if not _has_package(python, spec.package):
        start = time.perf_counter()
        _create(venv_dir, spec, torch_pin or project_torch_pin())
        install_seconds = time.perf_counter() - start
    versions = installed_versions(python, [spec.package, "torch"])
    return PeerEnv(spec=spec, python=python, versions=versions, install_seconds=install_seconds)


def installed_versions(python: Path, packages: list[str]) -> dict[str, str]:
    """Versions of `packages` as seen by the interpreter `python`."""
    code = ("import json, sys, importlib.metadata as m; "
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *packages], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _has_package(python: Path, package: str) -> bool:
    if not python.exists():
        return False
    code = "import sys, importlib.metadata as m; m.version(sys.argv[1])"
    return subprocess.run([str(python), "-c", code, package], capture_output=True).returncode == 0


def _create(venv_dir: Path, spec: PeerSpec, torch_pin: str) -> None:
    print(f"[peer-envs] creating {venv_dir} ({torch_pin}, then {spec.package}); this downloads "
          "the package's dependencies once", file=sys.stderr, flush=True)
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv_dir)])
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # torch goes first and pinned: left to itself, pip would resolve a multi-GB CUDA build.
    _run([*pip, torch_pin])
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        _run([*pip, "--dry-run", "--report", str(report_path), spec.package])
        planned = json.loads(report_path.read_text())["install"]
    forbidden = sorted(
        f"{item['metadata']['name']}=={item['metadata']['version']}" for item in planned
        if _is_forbidden(item["metadata"]["name"])
    )
    if forbidden:
        raise UserError(
            f"installing {spec.package} into {venv_dir} would also install {', '.join(forbidden)} "
            f"(a different torch stack). Pin a {spec.package} version compatible with "
            f"{torch_pin}, or delete {venv_dir} and install it by hand with --no-deps.")
    _run([*pip, spec.package])


def _is_forbidden(dist_name: str) -> bool:
    low = dist_name.lower().replace("_", "-")
    return low in _FORBIDDEN_EXACT or low.startswith(_FORBIDDEN_PREFIXES)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise UserError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{tail}")
