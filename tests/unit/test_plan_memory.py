import json

import pytest

from monosemantic import cli
from monosemantic.errors import UserError
from monosemantic.scale.memory import (
    PlanMemoryConfig,
    min_devices,
    plan_memory,
    ring_allgather_bytes,
    ring_allreduce_bytes,
)
from monosemantic.scale.plan_cli import GRID_FEATURES, GRID_WIDTHS


def small(**kw) -> PlanMemoryConfig:
    return PlanMemoryConfig(**{"d_in": 4, "n_features": 8, "batch_size": 2, **kw})


def test_ring_collectives():
    assert ring_allreduce_bytes(100, 4) == 150  # 2·3/4·100
    assert ring_allreduce_bytes(100, 1) == 0
    assert ring_allgather_bytes(10, 4) == 30
    assert ring_allgather_bytes(10, 1) == 0


def test_feature_parallel_relu_by_hand():
    plan = plan_memory(small(world=2, mode="features"))
    # Q = 2: f = 4 features and b = 2 tokens per rank; n_p = 2·4·4 + 4 + 4 = 40.
    assert (plan.local_features, plan.local_batch, plan.n_params) == (4, 2, 40)
    assert (plan.params, plan.grads, plan.adam) == (160, 160, 320)
    assert plan.activations == 3 * 2 * 4 * 4 + 2 * 2 * 4 * 4  # x, x̂, dx̂ + two b×f buffers
    assert plan.grad_allreduce == 0
    assert plan.decode_allreduce == 32  # 2·(1/2)·(b·d·4 bytes)
    assert plan.candidate_allgather == 0
    assert plan.total == 160 + 160 + 320 + 160


def test_feature_parallel_topk_sends_candidates():
    plan = plan_memory(small(world=2, architecture="topk", k=3))
    kept = 2 * 3 * (4 + 8)  # b·k values (fp32) and int64 indices
    assert plan.activations == 160 + kept
    assert plan.candidate_allgather == kept  # (Q−1)·kept
    assert plan.sent == 32 + kept


def test_data_parallel_by_hand():
    plan = plan_memory(small(world=2, mode="data"))
    # P = 2: b = 1, the whole SAE: n_p = 2·4·8 + 8 + 4 = 76.
    assert (plan.local_batch, plan.local_features, plan.n_params) == (1, 8, 76)
    assert plan.params == 304
    assert plan.grad_allreduce == 304  # 2·(1/2)·304
    assert plan.decode_allreduce == plan.candidate_allgather == 0
    assert plan.activations == 3 * 1 * 4 * 4 + 2 * 1 * 8 * 4


def test_mesh_combines_both_axes():
    plan = plan_memory(small(world=4, mode="mesh", data_parallel=2))
    assert (plan.data_parallel, plan.feature_parallel) == (2, 2)
    assert (plan.local_batch, plan.local_features, plan.n_params) == (1, 4, 40)
    assert plan.grad_allreduce == 160
    assert plan.decode_allreduce == 16


def test_feature_parallel_divides_parameter_memory():
    d = 16
    one = plan_memory(PlanMemoryConfig(d_in=d, n_features=1024, world=1))
    four = plan_memory(PlanMemoryConfig(d_in=d, n_features=1024, world=4))
    b_dec = d * 4  # replicated on every rank
    assert four.params - b_dec == (one.params - b_dec) // 4
    assert four.adam - 2 * b_dec == (one.adam - 2 * b_dec) // 4


def test_uneven_features_use_ceil():
    assert plan_memory(small(n_features=10, world=4)).local_features == 3


def test_bfloat16_halves_parameters_and_states():
    full = plan_memory(small())
    half = plan_memory(small(param_dtype="bfloat16", state_dtype="bfloat16"))
    assert (half.params, half.adam) == (full.params // 2, full.adam // 2)


def test_count_suffixes():
    assert plan_memory(small(n_features="8", world=1)).local_features == 8  # type: ignore[arg-type]
    assert plan_memory(PlanMemoryConfig(n_features="2M", d_in=4)).local_features == 2_000_000  # type: ignore[arg-type]


def test_min_devices_is_smallest_that_fits_and_monotone_in_features():
    previous = 0
    for n_features in (2**20, 2**22, 2**24, 2**25):
        cfg = PlanMemoryConfig(d_in=4096, n_features=n_features)
        n = min_devices(cfg)
        assert n is not None and n >= previous
        assert plan_memory(PlanMemoryConfig(d_in=4096, n_features=n_features, world=n)).fits
        if n > 1:
            assert not plan_memory(
                PlanMemoryConfig(d_in=4096, n_features=n_features, world=n - 1)).fits
        previous = n
    assert previous > 1


def test_min_devices_data_mode_cannot_shrink_parameters():
    assert min_devices(PlanMemoryConfig(d_in=8192, n_features=2**25, mode="data")) is None


def test_min_devices_mesh_is_a_multiple_of_the_data_axis():
    n = min_devices(PlanMemoryConfig(d_in=4096, n_features=2**24, mode="mesh", data_parallel=4))
    assert n is not None and n % 4 == 0


@pytest.mark.parametrize("kw", [
    {"world": 0},
    {"mode": "mesh", "world": 8, "data_parallel": 3},
    {"architecture": "topk", "k": 9},
    {"mode": "data", "world": 4},  # batch 2 < 4 data ranks
    {"n_features": "lots"},
    {"headroom": 1.5},
])
def test_bad_input_is_a_user_error(kw):
    with pytest.raises(UserError):
        plan_memory(small(**kw))


def test_cli_prints_one_plan(capsys):
    assert cli.main(["plan-memory", "--d-in", "4096", "--n-features", "34M", "--world", "64"]) == 0
    out = capsys.readouterr().out
    assert "F 34,000,000" in out and "64 devices" in out
    assert "fewest 80 GB devices that fit (mode features):" in out


def test_cli_table_and_json(tmp_path, capsys):
    path = tmp_path / "grid.json"
    assert cli.main(["plan-memory", "--table", "true", "--world", "8",
                     "--json-out", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split()[:1] and line.split()[0]
            in GRID_FEATURES]
    assert len(rows) == len(GRID_FEATURES) * len(GRID_WIDTHS)
    grid = json.loads(path.read_text())["grid"]
    assert {(r["features"], r["d_in"]) for r in grid} == {
        (f, d) for f in GRID_FEATURES for d in GRID_WIDTHS}
    assert all(r["fits"] == (r["total"] <= r["budget"]) for r in grid)


def test_cli_bad_world_is_reported(capsys):
    assert cli.main(["plan-memory", "--world", "0"]) == 2
    assert "--world 0" in capsys.readouterr().err
