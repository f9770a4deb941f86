"""Config dataclasses as the single source of truth for the Python API, the CLI and `cfg.json`.

Each config is a plain `@dataclass` whose fields carry *attribute docstrings* (a string literal on
the line after the field). Those docstrings become the CLI's `--help` text, so a field is
documented once. Nested dataclass fields become dotted options (`--corpus.source`), grouped
under the nested field's docstring in `--help`.

Field metadata tunes the CLI:
- `{"positional": True}`: a positional argument;
- `{"cli": False}`: not an option (filled in by the program, still in `cfg.json`);
- `{"choices": (...)}`: the values a `str` field accepts (a `Literal` type says the same);
- `{"short_flags": True}` on a nested dataclass field: each of its options is also accepted
  without the prefix (`--k` for `--sae.k`); both spellings set the same field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from monosemantic.errors import UserError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class ConfigError(UserError, ValueError):
    """A user-facing configuration mistake; the CLI prints it without a traceback."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (and its dataclass bases), keyed by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        statement = ast.parse(source).body[0]
        # The source of a class is its (decorated) class statement.
        assert isinstance(statement, ast.ClassDef), type(statement)
        body = statement.body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def parse_count(text: str | int) -> int:
    """An integer with an optional K/M/B suffix: `2M` -> 2_000_000, `1.5k` -> 1500."""
    if isinstance(text, int):
        return text
    raw = str(text).strip().replace("_", "")
    mult = _SUFFIXES.get(raw[-1:].lower(), 1)
    number = raw[:-1] if mult != 1 else raw
    try:
        value = float(number) * mult
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected an integer such as 4096 or 2M, got {text!r}") from err
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def _scalar_parser(tp: Any):
    if tp is bool:
        return _parse_bool
    if tp is int:
        return parse_count
    if tp in (float, str):
        return tp
    if tp is Path:
        return Path
    if typing.get_origin(tp) is typing.Literal:
        return str
    raise TypeError(f"unsupported config field type {tp!r}")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                            short_prefix: str | None = None, title: str | None = None,
                            description: str | None = None) -> None:
    """Add one option per field of `cls` (recursively for nested dataclasses).

    `short_prefix`, when not None, adds each option's alias `--{short_prefix}{name}`."""
    hints = _resolved_types(cls)
    docs = field_docs(cls)
    # argparse groups do not nest: every dataclass gets its own group on the parser.
    group = parser.add_argument_group(title or cls.__name__, description)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        dest = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            sub_short = prefix if f.metadata.get("short_flags") else (
                None if short_prefix is None else f"{short_prefix}{f.name}.")
            add_dataclass_arguments(parser, tp, prefix=f"{dest}.", short_prefix=sub_short,
                                    title=f"{dest} ({tp.__name__})",
                                    description=docs.get(f.name))
            continue
        default = _field_default(f)
        help_text = docs.get(f.name, "")
        if default is not dataclasses.MISSING:
            help_text += f" (default: {default!r})"
        # argparse %-formats help strings; a literal "2%" in a docstring must survive.
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), "dest": dest}
        origin = typing.get_origin(tp)
        if origin in (list, tuple):
            (inner, *_rest) = typing.get_args(tp) or (str,)
            kwargs.update(type=_scalar_parser(inner),
                          nargs="*" if f.metadata.get("positional") else "+")
            if not f.metadata.get("positional"):
                # `--feature a --feature b` must mean both, not the last one.
                kwargs["action"] = "extend"
        else:
            kwargs["type"] = _scalar_parser(tp)
            if origin is typing.Literal:
                kwargs["choices"] = list(typing.get_args(tp))
            elif "choices" in f.metadata:
                kwargs["choices"] = list(f.metadata["choices"])
        if f.metadata.get("positional"):
            kwargs.pop("dest")
            if default is not dataclasses.MISSING:
                kwargs["nargs"] = kwargs.get("nargs", "?")
                kwargs["default"] = default
            group.add_argument(dest, metavar=f.name.upper(), **kwargs)
            continue
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS
        flags = ["--" + dest.replace("_", "-")]
        if short_prefix is not None:
            flags.append("--" + f"{short_prefix}{f.name}".replace("_", "-"))
            if "choices" not in kwargs:
                kwargs["metavar"] = f.name.upper()
        group.add_argument(*flags, **kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def dataclass_from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build `cls` from parsed args; fields not given on the command line keep their defaults."""
    flat = {k: v for k, v in vars(ns).items() if not k.startswith("_")}
    return from_dict(cls, _unflatten(flat))


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def to_dict(cfg: DataclassInstance) -> dict[str, Any]:
    """JSON-ready dict of a config (Paths become strings, tuples become lists)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict (`to_dict`'s) as one level with dotted names (`sae.k`), as the CLI
    spells them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
    hints = _resolved_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown option(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp, _ = _unwrap_optional(hints[name])
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value)
        elif tp is Path and value is not None:
            value = Path(value)
        elif typing.get_origin(tp) is tuple and value is not None:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def save_config(cfg: DataclassInstance, path: Path) -> None:
    """Write `cfg` as pretty JSON (the `cfg.json` beside results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_config(cls: type[T], path: Path) -> T:
    """Read a config written by `save_config`."""
    return from_dict(cls, json.loads(Path(path).read_text()))
