"""`collective.agree` under torchrun (gloo): a step that fails on one rank stops every rank at
once, rank 0 naming the failing rank and its error; the ranks that did not fail never hang."""

from pathlib import Path

from helpers.torchrun import run_python
from monosemantic.distributed.collective import failure_message

SCRIPT = str(Path(__file__).resolve().parents[1] / "helpers" / "agree_on_rank.py")


def test_failure_message_groups_ranks_by_error():
    assert failure_message([None, "no /x", "no /x", "no /y"]) == \
        "on ranks 1, 2 of 4: no /x\non rank 3 of 4: no /y"


def test_a_path_one_rank_cannot_read_stops_every_rank(tmp_path):
    missing = tmp_path / "shard_00000.bin"
    done = run_python(2, SCRIPT, "1", str(missing), timeout=120)
    assert done.returncode != 0
    assert f"error: on rank 1 of 2: [Errno 2] No such file or directory: '{missing}'" \
        in done.stderr
    assert "error: rank 1 stopped: rank 0 reports the error" in done.stderr


def test_no_error_passes_through(tmp_path):
    done = run_python(2, SCRIPT, "5", str(tmp_path), timeout=120)  # no rank 5: none fails
    assert done.returncode == 0, done.stderr[-2000:]
