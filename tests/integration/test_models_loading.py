"""load_model: local dirs, .gguf caching, hub ids offline, the `hooks` CLI, the real default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.tiny import save_tiny_model_dir
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.models import DEFAULT_MODEL, capture, gguf_cache, load_model


def test_load_local_dir(tiny_model_dir):
    lm = load_model(str(tiny_model_dir))
    assert (lm.family, lm.n_layers, lm.d_model, lm.d_mlp) == ("llama", 3, 32, 128)
    assert not lm.model.training
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert lm.device == torch.device("cpu")
    assert lm.hook_point("blocks.2.hook_resid_post").module_path == "model.layers.2"
    ids_BS = lm.tokenizer(["The Golden Gate"], return_tensors="pt").input_ids
    assert (
        capture(lm, ids_BS, ["blocks.0.hook_resid_post"])["blocks.0.hook_resid_post"].shape[-1]
        == 32
    )


def test_bad_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "missing_model"))
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf"):
        load_model(str(tmp_path / "weights.bin"))
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path))


def test_hub_id_offline_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty local HF cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(UserError, match="appears to be offline") as info:
        load_model("someone/some-model-that-is-not-cached")
    assert ".gguf" in str(info.value) and "local model directory" in str(info.value)


@pytest.fixture
def fake_dequantize(monkeypatch, tmp_path):
    """Replace the (slow) GGUF de-quantization by writing a tiny model; counts builds."""
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def fake(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        if gguf.read_bytes().startswith(b"CRASH"):
            out.mkdir(parents=True)
            (out / "config.json").write_text("{}")
            raise RuntimeError("simulated crash while de-quantizing")
        save_tiny_model_dir(out, family="gemma3")

    monkeypatch.setattr(gguf_cache, "_dequantize_to", fake)
    return calls


def test_gguf_is_dequantized_once_then_cached(fake_dequantize, tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    first = load_model(str(gguf))
    second = load_model(str(gguf))
    assert len(fake_dequantize) == 1
    assert (first.family, second.family, second.d_model) == ("gemma3", "gemma3", 32)
    models = tmp_path / "cache" / "models"
    built = [p for p in models.iterdir() if not p.name.startswith(".")]
    assert len(built) == 1 and gguf_cache.is_complete(built[0])
    gguf.write_bytes(b"GGUF" + bytes(101))  # a different file at the same path
    load_model(str(gguf))
    assert len(fake_dequantize) == 2


def test_crash_leaves_no_half_cache(fake_dequantize, tmp_path):
    gguf = tmp_path / "bad.gguf"
    gguf.write_bytes(b"CRASH")
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_model(str(gguf))
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []
    gguf.write_bytes(b"GGUF")
    load_model(str(gguf))  # the next attempt builds a complete cache
    assert len([p for p in models.iterdir() if gguf_cache.is_complete(p)]) == 1


def test_cache_key(monkeypatch, tmp_path):
    import transformers

    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(tmp_path))
    a = gguf_cache.cache_dir_for("m", {"sha": "1"})
    assert a.parent == tmp_path / "models"
    assert gguf_cache.cache_dir_for("m", {"sha": "2"}) != a
    monkeypatch.setattr(transformers, "__version__", "0.0.1")
    assert gguf_cache.cache_dir_for("m", {"sha": "1"}) != a


def test_gguf_fingerprint(tmp_path):
    f1, f2, f3 = tmp_path / "1.gguf", tmp_path / "2.gguf", tmp_path / "3.gguf"
    f1.write_bytes(b"a" * 1000)
    f2.write_bytes(b"a" * 999 + b"b")
    f3.write_bytes(b"a" * 1000)
    assert gguf_cache.gguf_fingerprint(f1) == gguf_cache.gguf_fingerprint(f3)
    assert gguf_cache.gguf_fingerprint(f1) != gguf_cache.gguf_fingerprint(f2)


def test_hooks_cli(tiny_model_dir, capsys):
    assert main(["hooks", "--model", str(tiny_model_dir), "--layer", "1"]) == 0
    out = capsys.readouterr().out
    assert "family llama, 3 layers, d_model 32, d_mlp 128" in out
    assert "blocks.1.mlp.hook_post" in out and "input of model.layers.1.mlp.down_proj" in out
    assert "blocks.0." not in out and "blocks.2." not in out


def test_hooks_cli_bad_model(tmp_path, capsys):
    assert main(["hooks", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_default_model_layer6():
    lm = load_model(DEFAULT_MODEL)
    assert (lm.family, lm.n_layers, lm.d_model, lm.d_mlp) == ("gemma3", 18, 640, 2048)
    assert lm.model.config.vocab_size == 262_144
    assert (
        lm.model.get_output_embeddings().weight.data_ptr()
        == lm.model.get_input_embeddings().weight.data_ptr()
    )
    ids_BS = lm.tokenizer(
        ["The Golden Gate Bridge is in San Francisco, California."], return_tensors="pt"
    ).input_ids
    acts = capture(lm, ids_BS, ["blocks.6.hook_resid_post"])
    resid_BSD = acts["blocks.6.hook_resid_post"]
    assert resid_BSD.shape == (1, ids_BS.shape[1], 640)
    with torch.no_grad():
        hidden = lm.model(ids_BS, output_hidden_states=True).hidden_states
    torch.testing.assert_close(resid_BSD, hidden[7], rtol=0, atol=0)
    norms_S = resid_BSD[0, 1:].norm(dim=-1)  # BOS excluded: its norm dwarfs the rest
    assert norms_S.median() > 1000, norms_S  # measured: ~2,700-4,900 at layer 6
