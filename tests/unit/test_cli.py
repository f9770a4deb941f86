import importlib

import pytest

from monosemantic import cli


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name.split()[0] in out  # a group ("findings") lists its members itself


def test_a_group_lists_its_members_and_needs_one(capsys):
    assert cli.main(["findings"]) == 2
    out = capsys.readouterr().out
    assert all(member in out for member in ("dead", "splitting", "all"))


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help_from_its_config(name, capsys):
    spec = cli.COMMANDS[name]
    module = importlib.import_module(spec.module)
    assert hasattr(module, spec.config) and hasattr(module, spec.function)
    with pytest.raises(SystemExit) as exc:
        cli.main([*name.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert spec.summary in out
    assert "default:" in out  # option help generated from the dataclass fields
