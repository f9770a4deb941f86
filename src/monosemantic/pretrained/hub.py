"""`hf:OWNER/REPO[/FOLDER...]`: an SAE folder on the Hugging Face hub, downloaded then read as
a local folder (`huggingface_hub.snapshot_download`, into the usual HF cache)."""

from __future__ import annotations

from pathlib import Path

from monosemantic.errors import UserError

HUB_PREFIX = "hf:"


def is_hub_spec(spec: str | Path) -> bool:
    return str(spec).startswith(HUB_PREFIX)


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """(repo id, folder inside the repo; "" for its root) of `hf:OWNER/REPO[/FOLDER...]`."""
    parts = [p for p in spec[len(HUB_PREFIX):].strip("/").split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise UserError(f"{spec!r}: give a hub SAE as hf:OWNER/REPO/FOLDER, e.g. "
                        "hf:google/gemma-scope-2-270m-pt/resid_post/layer_6_width_16k_l0_medium")
    return "/".join(parts[:2]), "/".join(parts[2:])


def download_folder(spec: str) -> Path:
    """The local copy of the hub folder `spec` names (downloaded when not cached)."""
    import huggingface_hub

    repo_id, folder = parse_hub_spec(spec)
    patterns = [f"{folder}/*"] if folder else None
    try:
        root = huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns)
    except (OSError, ValueError) as err:  # hub errors derive from these (HTTP, offline)
        raise UserError(f"could not download {spec!r} from the Hugging Face hub ({err}): check "
                        "the repository and folder names, the network, and HF_TOKEN for gated "
                        "repositories; or download the folder and give its local path") from err
    local = Path(root) / folder
    if not local.is_dir() or not any(local.iterdir()):
        raise UserError(f"{spec!r}: the repository {repo_id} has no folder {folder!r} (nothing "
                        "was downloaded): check the folder name on the repository's file list")
    return local
