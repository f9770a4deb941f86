"""Hugging Face datasets, streamed by name (`hf:NAME`): nothing is downloaded up front.

NAME is anything `datasets.load_dataset` accepts: a hub id (needs network) or a local dataset
folder of parquet / jsonl / txt files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from monosemantic.data.documents import HF_PREFIX, CorpusConfig, CorpusReport
from monosemantic.data.files import missing_field_error, record_text
from monosemantic.errors import UserError


def _offline_error(name: str, err: Exception) -> UserError:
    return UserError(
        f"could not reach the Hugging Face Hub for dataset {name!r}: this machine seems offline "
        f"({err}). Use local data instead: --corpus.source path/to/data.jsonl (or .parquet, "
        f".txt, or a directory of them) with --corpus.text-field, a local dataset folder as "
        f"--corpus.source hf:/path/to/folder, or the offline default --corpus.source local-python."
    )


def open_streaming_dataset(cfg: CorpusConfig) -> Any:
    """`datasets.load_dataset(NAME, hf_config, split=split, streaming=True)` with the usual
    failures (offline, unknown name, bad split or config) turned into UserErrors."""
    name = cfg.source.removeprefix(HF_PREFIX)
    if not name:
        raise UserError("corpus source 'hf:' needs a dataset name, e.g. hf:roneneldan/TinyStories")
    try:
        import datasets
        from datasets.exceptions import DatasetNotFoundError
    except ImportError as err:
        raise UserError("Hugging Face datasets need the `datasets` package: "
                        "pip install 'monosemantic[datasets]'") from err
    try:
        return datasets.load_dataset(name, cfg.hf_config, split=cfg.split, streaming=True)
    except ConnectionError as err:
        raise _offline_error(name, err) from err
    except DatasetNotFoundError as err:
        raise UserError(f"Hugging Face dataset {name!r} not found ({err}); check the name, "
                        f"or pass a local file or folder") from err
    except FileNotFoundError as err:
        raise UserError(f"Hugging Face dataset {name!r}: {err}") from err
    except ValueError as err:
        # load_dataset reports a bad split or config name as ValueError, listing the valid ones.
        raise UserError(f"Hugging Face dataset {name!r} (config {cfg.hf_config!r}, split "
                        f"{cfg.split!r}): {err}") from err


def iter_hf(cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    """(origin, text) for each row of the streamed split, in dataset order."""
    dataset = open_streaming_dataset(cfg)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and cfg.text_field not in columns:
        raise missing_field_error(cfg.text_field, cfg.source, list(columns))
    rows = iter(dataset)
    index = 0
    while True:
        try:
            record = next(rows)
        except StopIteration:
            return
        except ConnectionError as err:
            raise _offline_error(cfg.source, err) from err
        where = f"{cfg.source}#{index}"
        index += 1
        text = record_text(record, cfg.text_field, where)
        if text is not None:
            report.records_read += 1
            yield where, text
