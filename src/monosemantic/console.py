"""The command-line output layer: the lines a command prints for its user.

Library code reports through `say` rather than `print`, so a Python caller can silence or
capture a command's report (`redirected`) without touching `sys.stdout`. Progress bars are
separate (`monosemantic.progress`, silenced by MONOSEMANTIC_QUIET).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TextIO

# None means "sys.stdout at the time of the call", so pytest's capsys and shell redirection see
# the output; a context variable keeps a redirect local to the thread (or task) that set it.
_stream: ContextVar[TextIO | None] = ContextVar("monosemantic_console_stream", default=None)


def say(*parts: object, sep: str = " ", end: str = "\n") -> None:
    """Write one line of a command's report (the arguments are joined as `print` joins them)."""
    stream = _stream.get() or sys.stdout
    stream.write(sep.join(str(p) for p in parts) + end)
    stream.flush()


@contextlib.contextmanager
def redirected(stream: TextIO | None) -> Iterator[TextIO]:
    """Send `say` output to `stream` inside the block (None: discard it); yields the stream."""
    target = stream if stream is not None else io.StringIO()
    token = _stream.set(target)
    try:
        yield target
    finally:
        _stream.reset(token)
