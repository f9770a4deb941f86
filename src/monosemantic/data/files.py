"""Local text files: .txt, .jsonl (one JSON object per line) and .parquet, a single file or a
directory of them (searched recursively, in sorted order)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from monosemantic.data.documents import CorpusConfig, CorpusReport
from monosemantic.data.local_corpus import read_text_file
from monosemantic.errors import UserError

FORMATS = (".txt", ".jsonl", ".parquet")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_PARQUET_BATCH_ROWS = 1024


def list_data_files(cfg: CorpusConfig) -> list[Path]:
    """The files `cfg.source` names: the file itself, or every supported file under the
    directory, sorted (then shuffled with the seed when `cfg.shuffle`)."""
    path = Path(cfg.source).expanduser()
    if not path.exists():
        raise UserError(
            f"corpus source {cfg.source!r}: no such file or directory. Use 'local-python' "
            f"(the offline default), 'hf:NAME' for a Hugging Face dataset, or a path to a "
            f"{'/'.join(FORMATS)} file or a directory of them."
        )
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise UserError(f"corpus source {cfg.source!r}: unsupported file type "
                            f"{path.suffix!r}; use one of {', '.join(FORMATS)}")
        return [path]
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and p.suffix.lower() in FORMATS
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise UserError(f"corpus source {cfg.source!r}: the directory holds no "
                        f"{'/'.join(FORMATS)} files")
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(files)
    return files


def iter_files(cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    """(origin, text) for each text in the files of `cfg.source`."""
    readers = {".txt": _iter_txt, ".jsonl": _iter_jsonl, ".parquet": _iter_parquet}
    for path in list_data_files(cfg):
        yield from readers[path.suffix.lower()](path, cfg, report)


def _iter_txt(path: Path, cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    text = read_text_file(path, report)
    if text is None:
        return
    if cfg.txt_unit == "file":
        report.records_read += 1
        yield str(path), text
        return
    if cfg.txt_unit == "line":
        pieces = text.splitlines()
    elif cfg.txt_unit == "paragraph":
        pieces = _PARAGRAPH_BREAK.split(text)
    else:
        raise UserError(f"txt_unit {cfg.txt_unit!r}: use 'file', 'paragraph' or 'line'")
    for index, piece in enumerate(pieces):
        report.records_read += 1
        yield f"{path}#{index}", piece


def _iter_jsonl(path: Path, cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    try:
        handle = path.open("rb")
    except OSError as err:
        report.skip(f"unreadable: {err.strerror or type(err).__name__}", str(path))
        return
    report.files_read += 1
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path}:{line_no}"
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                report.skip("jsonl line not UTF-8", where)
                continue
            except json.JSONDecodeError:
                report.skip("jsonl line not valid JSON", where)
                continue
            if not isinstance(record, dict):
                report.skip("jsonl line not a JSON object", where)
                continue
            text = record_text(record, cfg.text_field, where)
            if text is not None:
                report.records_read += 1
                yield where, text


def record_text(record: dict, field: str, where: str) -> str | None:
    """`record[field]` as text; a missing field is the user's mistake, None/null is no text."""
    if field not in record:
        raise missing_field_error(field, where, list(record))
    value = record[field]
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: field {field!r} holds {type(value).__name__}, not text; "
                        f"set text_field to a field that holds strings")
    return value


def missing_field_error(field: str, where: str, available: list[str]) -> UserError:
    """The error for a text field that the data does not have, listing the fields it does."""
    return UserError(f"{where}: no field {field!r}; the fields are {available}. "
                     f"Set text_field (--corpus.text-field) to one of them.")


def _iter_parquet(path: Path, cfg: CorpusConfig,
                  report: CorpusReport) -> Iterator[tuple[str, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise UserError(
            "reading .parquet needs pyarrow: pip install 'monosemantic[datasets]'") from err
    import pyarrow as pa

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        report.skip("unreadable parquet", f"{path} ({err})")
        return
    names = parquet.schema_arrow.names
    if cfg.text_field not in names:
        raise missing_field_error(cfg.text_field, str(path), names)
    report.files_read += 1
    row = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[cfg.text_field]):
        for value in batch.column(0).to_pylist():
            where = f"{path}#{row}"
            row += 1
            text = record_text({cfg.text_field: value}, cfg.text_field, where)
            if text is not None:
                report.records_read += 1
                yield where, text
