import pytest

from monosemantic.fsutil import atomic_write, atomic_write_stream, atomic_write_text, temp_path


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, [b"ab", memoryview(b"cd")])
    assert target.read_bytes() == b"abcd"
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not temp_path(target).exists()


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def explode(fh):
        fh.write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_stream(target, explode)
    assert target.read_text() == "old"
