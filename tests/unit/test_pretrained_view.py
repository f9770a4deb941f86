"""A pretrained SAE as a run: `RunDir.open(SRC, model=, hook=)` makes (then reuses) a run view
outside the source folder, `import-sae` writes one where asked, all or nothing, with clear
errors for a missing hook or model, a hook the model lacks, a width that does not match."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.pretrained import (
    gemma_scope_params,
    write_gemma_scope_npz,
    write_gemma_scope_safetensors,
    write_saelens_standard,
    write_saelens_transcoder,
)
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.pretrained import hub
from monosemantic.pretrained.view import VIEWS_ENV
from monosemantic.runs import RunDir

D, F = 32, 48  # the tiny model's width
HOOK = "blocks.1.hook_resid_post"
HOOK_IN, HOOK_OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"


@pytest.fixture(autouse=True)
def views(tmp_path, monkeypatch):
    monkeypatch.setenv(VIEWS_ENV, str(tmp_path / "views"))
    return tmp_path / "views"


@pytest.fixture
def gemma_scope(tmp_path):
    return write_gemma_scope_npz(tmp_path / "src" / "gs", gemma_scope_params(D, F))


def _listing(folder):
    return sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_a_gemma_scope_folder_opens_as_a_run_view(gemma_scope, tiny_model_dir, views):
    before = _listing(gemma_scope)
    run = RunDir.open(gemma_scope, str(tiny_model_dir), HOOK)
    assert run.path.parent == views and run.path != gemma_scope
    assert (run.model, run.hook, run.d_in, run.n_features) == (str(tiny_model_dir), HOOK, D, F)
    assert run.store_path is None and run.pretrained["layout"] == "gemma-scope"
    assert run.pretrained["source"] == str(gemma_scope)
    assert _listing(gemma_scope) == before  # nothing written beside the source
    # The view keeps the published codes: no decoder norms folded in.
    params = gemma_scope_params(D, F)
    assert torch.allclose(run.load_sae().W_dec_FD, torch.from_numpy(params["W_dec"]))
    # The same source and hook: the same view, reused (its analysis is found again).
    (run.path / "features.sqlite").write_text("kept")
    again = RunDir.find(gemma_scope, None, HOOK)
    assert again == run and (again.path / "features.sqlite").read_text() == "kept"
    assert RunDir.open(gemma_scope, str(tiny_model_dir), "blocks.0.hook_resid_post") != run


def test_the_hook_and_the_model_are_asked_for_when_the_folder_names_none(gemma_scope, views,
                                                                         tiny_model_dir):
    with pytest.raises(UserError, match="which hook.*--hook"):
        RunDir.open(gemma_scope, str(tiny_model_dir))
    with pytest.raises(UserError, match="which model.*--model"):
        RunDir.open(gemma_scope, None, HOOK)
    assert not views.exists() or not any(views.iterdir())


@pytest.mark.parametrize("hook, match", [
    ("blocks.7.hook_resid_post", "layer 7 does not exist"),
    ("blocks.1.attn.hook_z", "unknown hook point"),
    ("blocks.1.mlp.hook_post", "width 128 at blocks.1.mlp.hook_post, the SAE reads width 32"),
])
def test_a_hook_the_model_lacks_is_refused_before_anything_is_written(
        gemma_scope, tiny_model_dir, views, tmp_path, hook, match):
    with pytest.raises(UserError, match=match):
        RunDir.open(gemma_scope, str(tiny_model_dir), hook)
    assert not views.exists() or not any(views.iterdir())
    out = tmp_path / "out"
    assert main(["import-sae", str(gemma_scope), str(out), "--model", str(tiny_model_dir),
                 "--hook", hook]) == 2
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_changed_source_weights_are_not_served_from_a_stale_view(gemma_scope, tiny_model_dir):
    run = RunDir.open(gemma_scope, str(tiny_model_dir), HOOK)
    weights = gemma_scope / "params.npz"
    os.utime(weights, ns=(1, 1))
    with pytest.raises(UserError, match=f"changed since its run view {run.path}"):
        RunDir.open(gemma_scope, None, HOOK)


def test_import_sae_writes_a_run_folder(tmp_path, tiny_model_dir):
    folder, _ = write_saelens_standard(tmp_path / "lens", D, F, str(tiny_model_dir), HOOK)
    out = tmp_path / "run"
    assert main(["import-sae", str(folder), str(out)]) == 0
    run = RunDir.open(out)
    assert (run.model, run.hook, run.pretrained["layout"]) == (str(tiny_model_dir), HOOK,
                                                               "saelens")
    assert sorted(p.name for p in out.iterdir()) == ["sae"]
    # An existing, non-empty folder is not written into.
    assert main(["import-sae", str(folder), str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["sae"]


def test_a_run_given_another_hook_is_refused(tmp_path, tiny_model_dir):
    folder, _ = write_saelens_standard(tmp_path / "lens", D, F, str(tiny_model_dir), HOOK)
    out = tmp_path / "run"
    assert main(["import-sae", str(folder), str(out)]) == 0
    assert RunDir.open(out, hook=HOOK).path == out
    with pytest.raises(UserError, match="not --hook 'blocks.0.hook_resid_post'"):
        RunDir.open(out, hook="blocks.0.hook_resid_post")


def test_a_view_has_no_store_and_says_to_analyse_text(gemma_scope, tiny_model_dir):
    run = RunDir.open(gemma_scope, str(tiny_model_dir), HOOK)
    with pytest.raises(UserError, match="pretrained SAE .*no activation store.*--store, or X"):
        run.store(alternative="X")


def test_a_hub_spec_is_downloaded_then_read_as_a_local_folder(tmp_path, monkeypatch,
                                                              tiny_model_dir):
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    write_gemma_scope_npz(snapshot / "resid_post" / "layer_1_width_16k_l0_medium",
                          gemma_scope_params(D, F))
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    spec = "hf:google/gemma-scope-2-270m-pt/resid_post/layer_1_width_16k_l0_medium"
    run = RunDir.open(spec, str(tiny_model_dir))  # the hook comes from the folder's name
    assert calls == [("google/gemma-scope-2-270m-pt",
                      ["resid_post/layer_1_width_16k_l0_medium/*"])]
    assert run.hook == HOOK and run.pretrained["source"] == spec
    with pytest.raises(UserError, match="has no folder 'resid_post/layer_9"):
        RunDir.open(spec.replace("layer_1", "layer_9"), str(tiny_model_dir))
    with pytest.raises(UserError, match="hf:OWNER/REPO/FOLDER"):
        hub.parse_hub_spec("hf:google")


def _transcoder(tmp_path, tiny_model_dir, hook_out=HOOK_OUT):
    folder, _ = write_saelens_transcoder(tmp_path / "src" / "tc", D, D, F, str(tiny_model_dir),
                                         HOOK_IN, hook_out)
    return folder


def test_a_saelens_transcoder_folder_opens_with_its_output_hook(tmp_path, tiny_model_dir,
                                                               views):
    folder = _transcoder(tmp_path, tiny_model_dir)
    run = RunDir.open(folder)
    assert (run.hook, run.hook_out, run.decoder_hook) == (HOOK_IN, HOOK_OUT, HOOK_OUT)
    sae = run.load_sae()
    assert sae.cfg.is_transcoder and sae.cfg.skip and run.pretrained["layout"] == "saelens"
    assert run.load_model("cpu").spec is not None  # both sites checked at load
    # --hook-out replaces the folder's output hook, in a view of its own.
    other = RunDir.open(folder, hook_out=HOOK)
    assert other != run and other.hook_out == HOOK and RunDir.find(folder) == run
    with pytest.raises(UserError, match="not --hook-out 'blocks.1.hook_resid_post'"):
        RunDir.open(run.path, hook_out=HOOK)


def test_a_transcoder_that_names_no_output_hook_asks_for_hook_out(tmp_path, tiny_model_dir,
                                                                 views):
    folder = _transcoder(tmp_path, tiny_model_dir, hook_out=None)
    with pytest.raises(UserError, match="which hook it writes.*--hook-out"):
        RunDir.open(folder)
    assert not views.exists() or not any(views.iterdir())
    assert RunDir.open(folder, hook_out=HOOK_OUT).hook_out == HOOK_OUT


def test_hook_out_is_refused_for_an_sae_folder(tmp_path, tiny_model_dir):
    folder, _ = write_saelens_standard(tmp_path / "lens", D, F, str(tiny_model_dir), HOOK)
    # A Gemma Scope 2 SAE's config says "sae" (a Gemma Scope 1 folder says nothing: there
    # --hook-out makes it a transcoder, tests/unit/test_pretrained_gemma_scope_transcoders.py).
    gemma_scope = write_gemma_scope_safetensors(
        tmp_path / "gs2", gemma_scope_params(D, F),
        {"hf_hook_point_in": "model.layers.1.output", "hf_hook_point_out":
         "model.layers.1.output", "architecture": "jump_relu", "type": "sae"})
    for source, hook in ((folder, None), (gemma_scope, HOOK)):
        with pytest.raises(UserError, match="not a transcoder: --hook-out"):
            RunDir.open(source, str(tiny_model_dir), hook, HOOK_OUT)
    assert RunDir.open(folder).hook_out is None


def test_a_wrong_width_output_hook_is_refused(tmp_path, tiny_model_dir, views):
    folder = _transcoder(tmp_path, tiny_model_dir)
    wrong = "blocks.1.mlp.hook_post"
    with pytest.raises(UserError, match=f"width 128 at {wrong}, the transcoder writes width 32"):
        RunDir.open(folder, hook_out=wrong)
    assert not views.exists() or not any(views.iterdir())
    out = tmp_path / "out"
    assert main(["import-sae", str(folder), str(out), "--hook-out", wrong]) == 2
    assert not out.exists()
    # Written unchecked, the width is still checked when the model loads.
    assert main(["import-sae", str(folder), str(out), "--hook-out", wrong,
                 "--check-model", "false"]) == 0
    run = RunDir.open(out)
    assert run.hook_out == wrong
    with pytest.raises(UserError, match=f"width 128 at {wrong}; the SAE of .* writes width 32"):
        run.load_model("cpu")
