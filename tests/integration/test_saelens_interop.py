"""SAEs saved by monosemantic load in the real `sae-lens` and compute the same encode/decode.

sae-lens is installed into its own virtual environment under the user cache dir (reused across
runs): torch 2.13.0 from a local CPU wheel first, so that pip never resolves torch itself, then
sae-lens with torch pinned. Skipped only when that install is impossible here (no local torch
wheel, no package index).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
import torch
from safetensors.torch import load_file, save_file

from monosemantic.sae import SAEConfig, create_sae, load_sae, save_sae

TORCH_VERSION = "2.13.0"
VENV = Path(platformdirs.user_cache_dir("monosemantic")) / "interop" / "sae-lens-venv"
ARCHS = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")

# Runs inside the sae-lens venv: load each folder with sae_lens' own loader, encode, decode.
_SAELENS_SCRIPT = """
import json, sys
import sae_lens
from sae_lens import SAE
from safetensors.torch import load_file, save_file
folders, x_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
x = load_file(x_path)["x"]
out, classes = {}, {}
for name, folder in folders.items():
    sae = SAE.load_from_disk(folder, device="cpu")
    f = sae.encode(x)
    out[name + ".f"] = f.detach().contiguous()
    out[name + ".x_hat"] = sae.decode(f).detach().contiguous()
    classes[name] = type(sae).__name__
save_file(out, out_path)
print(json.dumps({"sae_lens": sae_lens.__version__, "classes": classes}))
"""


def _local_torch_wheel() -> str | None:
    dirs = [os.environ.get("MONOSEMANTIC_TORCH_WHEEL_DIR", ""),
            *os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]
    for folder in filter(None, dirs):
        found = sorted(glob.glob(os.path.join(folder, f"torch-{TORCH_VERSION}*cpu*.whl")))
        if found:
            return found[-1]
    return None


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _has_saelens() -> bool:
    if not _venv_python().exists():
        return False
    # Importing sae_lens takes tens of seconds (transformer_lens); its metadata is enough here.
    probe = subprocess.run([str(_venv_python()), "-c",
                            "import importlib.metadata as m, torch; m.version('sae-lens')"],
                           capture_output=True, timeout=300)
    return probe.returncode == 0


def _install_saelens() -> None:
    """Create the venv: local CPU torch wheel first, then sae-lens with torch pinned."""
    wheel = _local_torch_wheel()
    if wheel is None:
        pytest.skip(f"no local torch-{TORCH_VERSION} CPU wheel to install sae-lens against "
                    "(set MONOSEMANTIC_TORCH_WHEEL_DIR)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    constraints = VENV.parent / "constraints.txt"
    constraints.write_text(f"torch=={TORCH_VERSION}\n")
    pip = [str(_venv_python()), "-m", "pip", "install", "--quiet"]
    steps = [[sys.executable, "-m", "venv", "--clear", str(VENV)],
             [*pip, wheel],
             [*pip, "-c", str(constraints), "sae-lens"]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
        if done.returncode != 0:
            pytest.skip(f"cannot install sae-lens ({' '.join(cmd[-2:])}): "
                        f"{done.stderr.strip()[-600:]}")


@pytest.fixture(scope="module")
def saelens_python() -> Path:
    if not _has_saelens():
        _install_saelens()
    if not _has_saelens():
        pytest.skip("sae-lens was installed but is not importable")
    return _venv_python()


def _trained_like(arch: str) -> torch.nn.Module:
    torch.manual_seed(1)
    sae = create_sae(SAEConfig(arch, d_in=16, n_features=48, k=5))
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(48) * 0.1)
        sae.b_dec.copy_(torch.randn(16))
        if arch == "relu":
            sae.W_dec.mul_(torch.rand(48, 1) * 2 + 0.5)
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.log(torch.rand(48) * 0.5 + 0.05))
    if arch in ("batchtopk", "matryoshka"):
        sae.train()(torch.randn(128, 16) * 3)
    return sae.eval()


def test_saelens_loads_our_saes_and_agrees(tmp_path, saelens_python):
    folders, ours = {}, {}
    x = torch.randn(12, 16) * 40  # raw-scale activations
    for arch in ARCHS:
        path = save_sae(_trained_like(arch), tmp_path / arch,
                        {"model": "tiny-llama", "hook": "blocks.1.hook_resid_post"},
                        norm_scale=0.2)
        folders[arch] = str(path)
        loaded = load_sae(path)
        with torch.no_grad():
            f = loaded.encode(x)
            ours[arch] = (f, loaded.decode(f))
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    out_path = tmp_path / "saelens_out.safetensors"
    done = subprocess.run(
        [str(saelens_python), "-c", _SAELENS_SCRIPT, json.dumps(folders),
         str(tmp_path / "x.safetensors"), str(out_path)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["classes"] == {"relu": "StandardSAE", "topk": "TopKSAE",
                                 "batchtopk": "JumpReLUSAE", "jumprelu": "JumpReLUSAE",
                                 "matryoshka": "JumpReLUSAE"}
    theirs = load_file(str(out_path))
    for arch in ARCHS:
        f, x_hat = ours[arch]
        assert torch.count_nonzero(f) > 0, arch
        assert torch.equal(theirs[f"{arch}.f"] != 0, f != 0), arch
        assert torch.allclose(theirs[f"{arch}.f"], f, atol=1e-4, rtol=1e-4), arch
        assert torch.allclose(theirs[f"{arch}.x_hat"], x_hat, atol=1e-3, rtol=1e-4), arch


def test_saelens_reads_a_gemma_scope_run_view_as_gemma_scope_defines_it(tmp_path,
                                                                        saelens_python):
    """The run view of a Gemma Scope params.npz (decoder norms not folded) loads in SAELens
    and both compute Gemma Scope's forward (the numpy reference)."""
    import numpy as np

    from helpers.pretrained import gemma_scope_params, gemma_scope_reference, write_gemma_scope_npz
    from monosemantic.pretrained.view import import_run, locate

    params = gemma_scope_params(16, 48, seed=2)
    source = write_gemma_scope_npz(tmp_path / "gs", params)
    run = import_run(locate(source), tmp_path / "run", "tiny", "blocks.1.hook_resid_post",
                     check_model=False)
    x = torch.randn(64, 16)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    out_path = tmp_path / "saelens_out.safetensors"
    done = subprocess.run(
        [str(saelens_python), "-c", _SAELENS_SCRIPT, json.dumps({"gs": str(run / "sae")}),
         str(tmp_path / "x.safetensors"), str(out_path)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["classes"] == {"gs": "JumpReLUSAE"}
    theirs = load_file(str(out_path))
    f_ref, x_hat_ref = gemma_scope_reference(params, x.numpy())
    ours = load_sae(run / "sae")
    with torch.no_grad():
        f_ours = ours.encode(x)
    for f in (theirs["gs.f"], f_ours):
        assert torch.equal(f != 0, torch.from_numpy(f_ref != 0))
        np.testing.assert_allclose(f.double().numpy(), f_ref, atol=1e-5)
    np.testing.assert_allclose(theirs["gs.x_hat"].double().numpy(), x_hat_ref, atol=1e-4)
