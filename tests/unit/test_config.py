import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from monosemantic.config import (
    ConfigError,
    add_dataclass_arguments,
    dataclass_from_namespace,
    field_docs,
    from_dict,
    load_config,
    parse_count,
    save_config,
    to_dict,
)


@dataclass
class Inner:
    source: str = "local-python"
    """Where the text comes from."""
    seed: int = 0
    """Shuffling seed."""


@dataclass
class Outer:
    run: Path = field(metadata={"positional": True})
    """The run directory."""
    tokens: int = 1000
    """How many tokens."""
    hooks: tuple[str, ...] = ("blocks.0.hook_resid_post",)
    """Hook points."""
    kind: Literal["relu", "topk"] = "relu"
    """Architecture."""
    verbose: bool = False
    """Say more."""
    ratio: float | None = None
    """Optional ratio; 2% of rows by default elsewhere."""
    inner: Inner = field(default_factory=Inner)
    """Corpus options."""


def parse(argv):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Outer)
    return dataclass_from_namespace(Outer, parser.parse_args(argv))


def test_field_docs_read_attribute_docstrings():
    docs = field_docs(Outer)
    assert docs["tokens"] == "How many tokens."
    assert docs["kind"] == "Architecture."
    assert field_docs(Inner)["seed"] == "Shuffling seed."


def test_cli_parsing_defaults_and_overrides():
    cfg = parse(["some/run"])
    assert cfg == Outer(run=Path("some/run"))
    cfg = parse(
        [
            "r",
            "--tokens",
            "2M",
            "--hooks",
            "a",
            "b",
            "--kind",
            "topk",
            "--verbose",
            "true",
            "--ratio",
            "0.5",
            "--inner.seed",
            "7",
        ]
    )
    assert cfg.tokens == 2_000_000
    assert cfg.hooks == ("a", "b")
    assert cfg.kind == "topk" and cfg.verbose is True and cfg.ratio == 0.5
    assert cfg.inner == Inner(seed=7)


def test_repeated_list_option_accumulates():
    assert parse(["r", "--hooks", "a", "--hooks", "b", "c"]).hooks == ("a", "b", "c")


def test_cli_rejects_bad_choice_and_bad_count():
    with pytest.raises(SystemExit):
        parse(["r", "--kind", "gated"])
    with pytest.raises(SystemExit):
        parse(["r", "--tokens", "many"])


def test_help_text_comes_from_docstrings(capsys):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Outer)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert (
        "How many tokens." in out
        and "--inner.source" in out
        and "Where the text comes from." in out
    )
    assert "2% of rows" in out  # argparse %-formatting must not eat a literal percent


def test_json_round_trip(tmp_path):
    cfg = Outer(run=Path("x"), hooks=("h1", "h2"), inner=Inner(source="a.txt"))
    save_config(cfg, tmp_path / "cfg.json")
    assert json.loads((tmp_path / "cfg.json").read_text())["inner"]["source"] == "a.txt"
    assert load_config(Outer, tmp_path / "cfg.json") == cfg
    assert to_dict(cfg)["run"] == "x"


def test_unknown_keys_are_an_error():
    with pytest.raises(ConfigError, match="typo"):
        from_dict(Outer, {"run": "x", "typo": 1})


@pytest.mark.parametrize(
    "text,value", [("4096", 4096), ("2M", 2_000_000), ("1.5k", 1500), ("3B", 3 * 10**9)]
)
def test_parse_count(text, value):
    assert parse_count(text) == value


def test_parse_count_rejects_fractions():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_count("1.0005k")


@dataclass
class Model:
    name: str = field(default="a", metadata={"choices": ("a", "b")})
    """Which model."""
    width: int | None = field(default=None, metadata={"cli": False})
    """Filled in by the program."""
    size: int = 4
    """How big."""


@dataclass
class Job:
    model: Model = field(default_factory=Model, metadata={"short_flags": True})
    """The model's options."""
    other: Model = field(default_factory=Model)
    """A second model, prefixed only."""
    steps: int = 1
    """Steps."""


def _job_parser():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Job)
    return parser


def test_short_flags_alias_a_nested_dataclass_options():
    parser = _job_parser()
    short = dataclass_from_namespace(Job, parser.parse_args(["--name", "b", "--size", "2K"]))
    long = dataclass_from_namespace(
        Job, parser.parse_args(["--model.name", "b", "--model.size", "2000"])
    )
    assert short == long == Job(model=Model(name="b", size=2000))
    with pytest.raises(SystemExit):  # only the field marked short_flags has short spellings
        parser.parse_args(["--other.name", "a", "--width", "3"])


def test_cli_false_fields_and_metadata_choices():
    parser = _job_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--model.width", "3"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--model.name", "c"])
    # Not on the command line, still in the config's JSON.
    cfg = from_dict(Job, {"model": {"width": 3}})
    assert cfg.model.width == 3 and to_dict(cfg)["model"]["width"] == 3


def test_nested_group_help_shows_both_spellings_and_the_docstrings(capsys):
    with pytest.raises(SystemExit):
        _job_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "model (Model):" in out and "The model's options." in out
    assert "--model.size SIZE, --size SIZE" in out and "How big." in out
    assert "--model.name {a,b}, --name {a,b}" in out and "--other.name {a,b}    Which" in out
