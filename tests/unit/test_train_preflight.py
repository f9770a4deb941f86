"""The messages of `train.preflight` (ranks with different options) and
`distributed.failures` (failed collectives)."""

import pytest
import torch.distributed as dist

from monosemantic.distributed.failures import (
    RankFailureError,
    explain_failure,
    explained_failures,
)
from monosemantic.errors import UserError
from monosemantic.train.preflight import describe_mismatch, differing_fields

GLOO_TIMEOUT = ("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out "
                "waiting 3000ms for recv operation to complete")
GLOO_RESET = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
              "[127.0.0.1]:30884: Connection reset by peer. This is typically caused by ...")


def test_mismatch_names_each_differing_option_with_the_ranks_holding_each_value():
    base = {"lr": 0.003, "sae.k": 32, "out": "runs/a", "seed": 0}
    configs = [base, {**base, "lr": 0.001}, base, {**base, "lr": 0.001, "sae.k": 16}]
    assert differing_fields(configs) == ["lr", "sae.k"]
    message = describe_mismatch(configs)
    assert "--lr: 0.003 on ranks 0, 2; 0.001 on ranks 1, 3" in message
    assert "--sae.k: 32 on ranks 0, 1, 2; 16 on rank 3" in message
    assert "seed" not in message and "out" not in message


def test_mismatch_counts_the_options_beyond_the_listed_ones():
    configs = [{f"opt_{i:02d}": 0 for i in range(12)}, {f"opt_{i:02d}": 1 for i in range(12)}]
    message = describe_mismatch(configs)
    assert "--opt-07" in message and "--opt-08" not in message
    assert "... and 4 more" in message


def test_a_missing_option_counts_as_none():
    assert differing_fields([{"a": 1, "b": None}, {"a": 1}]) == []
    assert differing_fields([{"a": 1, "b": 2}, {"a": 1}]) == ["b"]


def test_a_gloo_timeout_names_the_option_and_what_to_do():
    err = explain_failure(RuntimeError(GLOO_TIMEOUT), rank=2, timeout_s=3.0)
    assert isinstance(err, RankFailureError) and isinstance(err, UserError)
    text = str(err)
    assert text.startswith("rank 2: a collective waited longer than --dist-timeout 3 s")
    assert "raise --dist-timeout" in text and "Timed out waiting 3000ms" in text


def test_a_timeout_while_joining_says_a_rank_did_not_join():
    err = explain_failure(dist.DistStoreError("wait timeout after 3000ms, keys: /default_pg/0"),
                          rank=0, timeout_s=3.0, joining=True)
    assert err is not None
    assert "not every rank joined the process group within --dist-timeout 3 s" in str(err)


def test_a_lost_connection_says_another_rank_died():
    err = explain_failure(RuntimeError(GLOO_RESET), rank=0, timeout_s=600.0)
    assert err is not None and "that rank most likely died" in str(err)


def test_other_errors_pass_unchanged():
    assert explain_failure(RuntimeError("CUDA out of memory"), rank=0, timeout_s=600.0) is None
    assert explain_failure(UserError("timeout in the message"), rank=0, timeout_s=1.0) is None
    original = RuntimeError("shape mismatch")
    with pytest.raises(RuntimeError) as caught, explained_failures(rank=0, timeout_s=1.0):
        raise original
    assert caught.value is original
    with pytest.raises(RankFailureError) as caught, explained_failures(rank=1, timeout_s=1.0):
        raise RuntimeError(GLOO_TIMEOUT)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_dist_timeout_must_be_positive(tmp_path):
    from monosemantic.config import ConfigError
    from monosemantic.train.config import TrainConfig, validate

    validate(TrainConfig(out=tmp_path, store=tmp_path, dist_timeout=0.5))
    with pytest.raises(ConfigError, match="--dist-timeout must be > 0"):
        validate(TrainConfig(out=tmp_path, store=tmp_path, dist_timeout=0))
