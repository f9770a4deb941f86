"""The sweep's grid: sizes, names, the mistakes refused before training, the saved options."""

import dataclasses
from pathlib import Path

import pytest

from monosemantic.config import ConfigError, to_dict
from monosemantic.sweep.config import RunOptions, SweepConfig, parse_features, parse_part
from monosemantic.sweep.grid import (
    grid_points,
    my_points,
    number_text,
    size_seed,
    size_text,
    tokens_text,
)
from monosemantic.sweep.point import FLOPS_FORMULA, training_flops
from monosemantic.sweep.table import recipe_changes
from monosemantic.train.config import TrainConfig


def _cfg(**overrides) -> SweepConfig:
    values = dict(out=Path("sw"), store=Path("acts"), n_features=["1k", "2k"],
                  tokens=[10**6, 2 * 10**6], train=RunOptions(batch_size=1024))
    values.update(overrides)
    return SweepConfig(**values)


@pytest.mark.parametrize("text,size", [("16384", 16384), ("16k", 16384), ("16K", 16384),
                                       ("2^14", 16384), ("1M", 2**20), ("1.5k", 1536),
                                       (4096, 4096)])
def test_feature_sizes_are_binary(text, size):
    assert parse_features(text) == size


@pytest.mark.parametrize("text", ["16q", "1.3k", "two", ""])
def test_bad_feature_size_names_the_option(text):
    with pytest.raises(ConfigError, match="--n-features"):
        parse_features(text)


def test_names_read_as_the_settings():
    assert [size_text(n) for n in (16384, 2**20, 1000)] == ["16k", "1M", "1000"]
    assert [tokens_text(n) for n in (10**6, 2 * 10**9, 1500, 1234)] == ["1M", "2B", "1500",
                                                                       "1234"]
    assert [number_text(x) for x in (5.0, 0.5, 2e-4, 5e-5, 32)] == ["5", "0.5", "2e-4", "5e-5",
                                                                    "32"]
    names = [p.name for p in grid_points(_cfg(architecture="topk", k=[16, 32], lr=[1e-3]))]
    assert names[:2] == ["f1k_t1M_lr1e-3_k16", "f1k_t1M_lr1e-3_k32"]
    assert len(names) == 8 == len(set(names))
    assert [p.name for p in grid_points(_cfg())][0] == "f1k_t1M_l1-5"


def test_points_carry_the_shared_options_to_each_run():
    cfg = _cfg(architecture="topk", k=[8], train=RunOptions(batch_size=512, seed=3))
    point = grid_points(cfg)[-1]
    train = point.train_config(cfg)
    assert train.out == Path("sw") / point.name
    assert (train.sae.n_features, train.sae.k, train.total_tokens) == (2048, 8, 2 * 10**6)
    assert (train.batch_size, train.lr) == (512, None)
    # The seed is the size's own, derived from the base seed 3.
    assert train.seed == size_seed(3, 2048) != size_seed(3, 1024)
    assert grid_points(cfg)[0].train_config(cfg).seed == size_seed(3, 1024)


def test_run_options_default_to_the_trainers_recipe():
    trainer = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(RunOptions):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        theirs = trainer[f.name]
        assert default == (theirs.default_factory() if theirs.default is dataclasses.MISSING
                           else theirs.default), f.name


@pytest.mark.parametrize("overrides,message", [
    (dict(n_features=[]), "the grid is empty"),
    (dict(tokens=[]), "the grid is empty"),
    (dict(tokens=[512]), "less than one batch"),
    (dict(architecture="topk", k=[64, 4096]), "k = 4096 is larger than n_features = 1024"),
    (dict(k=[32]), "--k does not apply to relu"),
    (dict(architecture="topk", l1_coefficient=[1.0]), "--l1-coefficient does not apply"),
    (dict(n_features=["1k", "1024"]), "lists a value twice"),
    (dict(lr=[0.0]), "--lr takes values > 0"),
    (dict(tokens=[1000, 1024]), "the same number of steps"),
])
def test_bad_grids_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        grid_points(_cfg(**overrides))


def test_parts_split_the_grid():
    points = grid_points(_cfg(lr=[1e-4, 2e-4]))
    parts = [my_points(_cfg(part=f"{i}/3"), points) for i in (1, 2, 3)]
    assert sorted(p.name for part in parts for p in part) == sorted(p.name for p in points)
    assert parse_part(None) == (0, 1)
    for bad in ("0/2", "3/2", "1-2"):
        with pytest.raises(ConfigError, match="--part"):
            parse_part(bad)


def test_only_grid_and_execution_options_may_change():
    old = to_dict(_cfg())
    assert recipe_changes(old, to_dict(_cfg(n_features=["4k"], jobs=4, part="1/2",
                                            train=RunOptions(batch_size=1024, device="cuda"))))\
        == {}
    changed = recipe_changes(old, to_dict(_cfg(train=RunOptions(batch_size=2048),
                                               architecture="topk")))
    assert set(changed) == {"train.batch_size", "architecture"}


def test_flops_are_dense_six_per_weight_per_token():
    assert training_flops(d_in=64, n_features=1024, tokens=10**6) == 6 * (2 * 64 * 1024) * 10**6
    assert FLOPS_FORMULA == "12·d·F·tokens"


def test_table_is_sorted_by_the_settings_not_by_the_folders(tmp_path):
    from monosemantic.sweep.record import SWEEP_TABLE, SweepRecord, read_sweep
    from monosemantic.sweep.table import write_table

    def record(run, n_features, k):
        return SweepRecord(run=run, architecture="topk", n_features=n_features, d_in=8,
                           tokens=1000, steps=1, batch_size=1000, lr=1e-3, flops=1.0,
                           flops_formula=FLOPS_FORMULA, train_loss=1.0, sparsity={"k": k})

    for r in (record("a", 64, 4), record("b", 32, 16), record("c", 32, 4)):
        (tmp_path / r.run).mkdir()
        (tmp_path / r.run / "sweep_record.json").write_text(r.to_json())
    (tmp_path / "not_a_run").mkdir()
    assert [r.run for r in write_table(tmp_path)] == ["c", "b", "a"]
    assert [r.run for r in read_sweep(tmp_path)] == ["c", "b", "a"]
    assert (tmp_path / SWEEP_TABLE).read_text().count("\n") == 3
