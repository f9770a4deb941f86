"""The inputs of `bench RUN ...` without a model: which runs are paired, which tokenizer and
model each run gets (loaded once per spec), and the new options' checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import monosemantic.models
from monosemantic.bench.consistency import consistency_pairs
from monosemantic.bench.lm import LanguageModels
from monosemantic.bench.options import RealBenchOptions
from monosemantic.config import ConfigError
from monosemantic.errors import UserError

SAE_CFG = {"architecture": "topk", "d_in": 8, "n_features": 32, "k": 4}


def _run(name: str, model: str = "m", seed: int | None = 0, pretrained: bool = False,
         hook: str = "blocks.1.hook_resid_post", d_in: int = 8):
    """What consistency_pairs and LanguageModels read of a RunDir."""
    extra = {"train_config": None if seed is None else {"seed": seed}}
    return SimpleNamespace(name=name, path=Path(name), model=model, hook=hook, d_in=d_in,
                           metadata={"sae_config": dict(SAE_CFG)}, extra=extra,
                           pretrained={"source": name} if pretrained else None)


def test_runs_differing_in_seed_pair_and_pretrained_saes_only_on_request():
    runs = [_run("a", seed=0), _run("b", seed=1), _run("gs", seed=None, pretrained=True),
            _run("gs2", seed=None, pretrained=True)]
    assert consistency_pairs(runs, []) == [(0, 1)]
    assert consistency_pairs(runs, [3, 1]) == [(0, 1), (0, 2)]


def test_the_model_override_makes_differently_recorded_models_comparable():
    runs = [_run("a", model="gemma-3-270m"), _run("gs", model="/models/gemma", seed=None,
                                                   pretrained=True)]
    with pytest.raises(UserError, match="only SAEs of the same activations"):
        consistency_pairs(runs, [1, 2])
    assert consistency_pairs(runs, [1, 2], model="/models/gemma") == [(0, 1)]
    seeds = [_run("a", model="x", seed=0), _run("b", model="y", seed=1)]
    assert consistency_pairs(seeds, []) == []
    assert consistency_pairs(seeds, [], model="z") == [(0, 1)]


class _Tokenizer:
    def __init__(self, spec: str):
        self.spec = spec

    def decode(self, ids: list[int]) -> str:
        return f"{self.spec}:{ids[0]}"


class _LM:
    def __init__(self, spec: str, width: int = 8):
        self.spec, self.width, self.tokenizer = spec, width, _Tokenizer(spec + "/lm")

    def hook_point(self, hook: str) -> SimpleNamespace:
        return SimpleNamespace(width=self.width)


@pytest.fixture()
def loads(monkeypatch):
    """Every tokenizer and model load, by spec."""
    seen: dict[str, list[str]] = {"tokenizer": [], "model": []}

    def load_tokenizer(spec: str) -> _Tokenizer:
        seen["tokenizer"].append(spec)
        return _Tokenizer(spec)

    monkeypatch.setattr(monosemantic.models, "load_tokenizer", load_tokenizer)
    return seen


def _with_model_loads(run, seen):
    def load_model(device, dtype=None, spec=None):
        seen["model"].append((spec, device, dtype))
        return _LM(spec)

    run.load_model = load_model
    return run


def test_token_text_reads_the_tokenizer_only_once_per_spec(loads):
    models = LanguageModels(None, "cpu")
    a, b, c = _run("a", model="m1"), _run("b", model="m1"), _run("c", model="m2")
    assert [models.decoder(r)(5) for r in (a, b, c, a)] == ["m1:5", "m1:5", "m2:5", "m1:5"]
    assert loads["tokenizer"] == ["m1", "m2"] and loads["model"] == []
    models = LanguageModels("other", "cpu")
    assert models.decoder(a)(1) == "other:1" and models.spec(c) == "other"


def test_the_model_loads_once_per_spec_and_dtype_and_its_tokenizer_is_reused(loads):
    models = LanguageModels(None, "cuda:0")
    a, b = (_with_model_loads(_run(n, model="m1"), loads) for n in "ab")
    load_a = models.loader(a, "float32")
    assert loads["model"] == []  # nothing loads until a metric asks
    lm = load_a()
    assert models.model(b, "float32") is lm and loads["model"] == [("m1", "cuda:0", "float32")]
    assert models.decoder(b)(3) == "m1/lm:3" and loads["tokenizer"] == []
    models.model(b, "bfloat16")
    assert len(loads["model"]) == 2


def test_a_run_of_another_width_is_refused_by_the_shared_model(loads):
    models = LanguageModels(None, "cpu", lm=_LM("given", width=8))
    assert models.model(_run("a"), "float32").spec == "given"
    with pytest.raises(UserError, match="reads width 16"):
        models.model(_run("wide", d_in=16), "float32")
    assert loads == {"tokenizer": [], "model": []}


@pytest.mark.parametrize("field, value, message", [
    ("absorption_words", 0, "--absorption-words must be >= 1"),
    ("neuron_tokens", 0, "--neuron-tokens must be >= 1"),
    ("neuron_weak_r", 1.0, "--neuron-weak-r"),
    ("mlp_layer", -1, "--mlp-layer"),
])
def test_bad_metric_options_are_refused(field, value, message):
    opts = RealBenchOptions(**{field: value})
    with pytest.raises(ConfigError, match=message):
        opts.validate()
