"""The probing tasks' labelling rules (bench/tasks.py)."""

from monosemantic.bench.compare import format_table, summary_rows
from monosemantic.bench.page import frontier
from monosemantic.bench.tasks import (
    CODE,
    COMMENT,
    DOCSTRING,
    STRING,
    char_states,
    complete_documents,
    label_tokens,
)


def test_char_states_of_python():
    text = 'x = "a # b"  # note\ndef f():\n    """Doc \'q\'."""\n    return \'s\\\'t\'\n'
    states = char_states(text)

    def state_at(sub: str, offset: int = 0) -> int:
        return states[text.index(sub) + offset]

    assert state_at("x =") == CODE
    assert state_at('"a # b"') == STRING and state_at("# b") == STRING
    assert state_at("# note") == COMMENT
    assert state_at("def") == CODE
    assert state_at('"""Doc') == DOCSTRING and state_at("'q'") == DOCSTRING
    assert state_at("return") == CODE
    assert state_at("'s", 1) == STRING and state_at("t'") == STRING  # escaped quote inside
    assert states[-1] == CODE


def test_an_unclosed_one_line_string_ends_at_its_line():
    text = "a = 'open\nb = 1\n"
    states = char_states(text)
    assert states[text.index("open")] == STRING and states[text.index("b =")] == CODE


def test_complete_documents_keep_the_prefix_from_position_one():
    doc_ids = [5, 5, 5, 7, 7, 7, 8, -1]
    positions = [1, 2, 4, 2, 3, 4, 0, -1]
    assert complete_documents(doc_ids, positions) == {5: [0, 1]}


def test_label_tokens():
    pieces = ["import", " os", "\n", "#", " Hello", " world", "\n", "if", " x", ":",
              " s", " =", " '", "Str", "'", "\n", '"""', "Doc", '"""']
    n = len(pieces)
    labels = label_tokens(pieces, [0] * n, list(range(1, n + 1)))
    by = labels.by_task
    at = {p: i for i, p in enumerate(pieces)}
    assert labels.n_labelled == n
    assert by["keyword"][at["import"]] == 1 and by["keyword"][at[" os"]] == 0
    assert by["keyword"][at[" Hello"]] == -1  # in a comment: not a code token
    assert by["prose"][at[" Hello"]] == 1 and by["prose"][at["if"]] == 0
    assert by["prose"][at["Str"]] == -1  # string literals are in neither class
    assert by["comment"][at[" world"]] == 1 and by["comment"][at["Doc"]] == 0
    assert by["string"][at["Str"]] == 1 and by["string"][at[" '"]] == 1
    assert by["string"][at[" x"]] == 0
    assert by["capitalised"][at[" Hello"]] == 1 and by["capitalised"][at[" world"]] == 0
    assert by["capitalised"][at["Str"]] == 1 and by["capitalised"][at[" ="]] == -1
    assert by["line_start"][at["import"]] == 1 and by["line_start"][at["#"]] == 1
    assert by["line_start"][at["if"]] == 1 and by["line_start"][at[" x"]] == 0
    for task in by:  # whitespace-only tokens belong to no task
        assert by[task][at["\n"]] == -1
    assert labels.counts("keyword") == (3, 2)  # os, x, s / import, if


def test_tokens_of_an_incomplete_document_are_unlabelled():
    labels = label_tokens(["if", " x"], [3, 3], [2, 3])
    assert labels.n_labelled == 0
    assert all((y == -1).all() for y in labels.by_task.values())


def test_summary_rows_and_table():
    results = {"a": {"metrics": {"m1": {"summary": {"l0": 3.0, "variance_explained": 0.9}},
                                 "m2": {"summary": {"probe_k1": 0.7}}}},
               "b": {"metrics": {"m1": {"summary": {"l0": 5.0, "variance_explained": None}},
                                 "m2": {}}}}
    columns, rows = summary_rows(results)
    assert columns == ["run", "l0", "variance_explained", "probe_k1"]
    assert rows == [["a", 3.0, 0.9, 0.7], ["b", 5.0, None, None]]
    table = format_table(columns, rows)
    assert "0.900" in table and table.splitlines()[3].split()[-1] == "-"


def test_pareto_frontier():
    points = [("a", 10, 0.8), ("b", 20, 0.9), ("c", 30, 0.85), ("d", 5, 0.5), ("e", 10, 0.7)]
    assert [p[0] for p in frontier(points)] == ["d", "a", "b"]
