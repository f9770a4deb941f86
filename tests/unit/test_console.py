"""The output layer: `say` goes to stdout by default, and a redirect is scoped to its block."""

from __future__ import annotations

import io
import threading

from monosemantic.console import redirected, say


def test_say_joins_like_print(capsys):
    say("a", 1, 2.5, sep="|")
    say("no newline", end="")
    assert capsys.readouterr().out == "a|1|2.5\nno newline"


def test_redirect_captures_and_restores(capsys):
    with redirected(io.StringIO()) as buf:
        say("hidden")
    say("shown")
    assert buf.getvalue() == "hidden\n"
    assert capsys.readouterr().out == "shown\n"


def test_none_discards(capsys):
    with redirected(None):
        say("gone")
    assert capsys.readouterr().out == ""


def test_redirect_is_local_to_its_thread(capsys):
    seen = []

    def other() -> None:
        say("from the other thread")
        seen.append(True)

    with redirected(io.StringIO()) as buf:
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [True] and buf.getvalue() == ""
    assert capsys.readouterr().out == "from the other thread\n"
