"""Prompt building, the held-out split, the score formulas and the local backend's helpers,
on hand-made inputs."""

import random

import pytest

from monosemantic.featuredb.reader import Example, FeatureCard, Interval
from monosemantic.interp.backends.local import LocalBackend, json_end, transcript
from monosemantic.interp.examples import (
    SplitOptions,
    pick_across_intervals,
    split_examples,
)
from monosemantic.interp.metrics import balanced_accuracy, pearson, rubric_summary
from monosemantic.interp.prompts import (
    PromptOptions,
    explainer_messages,
    format_example,
    marked_positions,
)
from monosemantic.interp.scorers import _ratings, _simulated, fuzz_marks
from monosemantic.interp.structured import ParseError


def ex(kind, row, acts, tokens=None, interval=None):
    tokens = tokens or [f"t{i}" for i in range(len(acts))]
    peak = max(range(len(acts)), key=lambda i: acts[i])
    return Example(kind, 0, row, max(acts), peak, list(range(len(acts))), tokens, acts, interval)


def card_with(n_intervals=4, per_interval=3):
    intervals = []
    row = 100
    for i in range(n_intervals):
        iv = Interval(i, i * 2.5, (i + 1) * 2.5, 10, 0.25)
        for _ in range(per_interval):
            row += 1
            iv.examples.append(ex("interval", row, [0.0, i * 2.5 + 1.0, 0.0], interval=i))
        intervals.append(iv)
    top = [ex("top", r, [0.0, 10.0 - r, 0.0]) for r in range(3)]
    rand = [ex("random", 50 + r, [1.5, 0.0, 0.0]) for r in range(3)]
    zero = [ex("zero", 70, [0.0, 0.0, 0.0]), ex("zero", 71, [0.0, 0.5, 0.0])]
    return FeatureCard(id=7, max_act=10.0, count=40, density=0.01, mean_act=3.0, top=top,
                       intervals=intervals, random=rand, zero=zero, histogram=None,
                       logits_up=[(" foo", 1.0)], logits_down=[(" bar", -1.0)], neighbours={},
                       explanations=[], scores=[])


def test_prompt_marks_exactly_the_activating_tokens():
    e = ex("top", 0, [0.0, 5.0, 0.0, 10.0, 0.2], tokens=["a", " b", "\n", " d", " e"])
    text = format_example(e, max_act=10.0)
    assert text.splitlines()[0] == "a<< b>>\\n<< d>><< e>>"
    assert "' b' 5" in text and "' d' 10" in text and "' e' 1" in text
    assert marked_positions(e.acts, 10.0, mark_fraction=0.1) == [1, 3]
    assert format_example(ex("zero", 0, [0.0, 0.0]), 10.0) == "t0t1"


def test_explainer_prompt_spans_intervals_and_logits():
    card = card_with()
    split = split_examples(card, SplitOptions(explain_top=2, explain_per_interval=1,
                                              explain_random=1))
    user = explainer_messages(card, split, PromptOptions())[1]["content"]
    assert user.count("<<") == 2 + 4 + 1  # one active token per shown example
    assert "' foo'" in user and "' bar'" in user and "level" in user
    assert '"label"' in explainer_messages(card, split)[0]["content"]


def test_split_holds_out_only_unseen_examples():
    card = card_with()
    split = split_examples(card, SplitOptions(explain_top=2, explain_per_interval=1,
                                              explain_random=1))
    shown = {e.row for e in split.shown()}
    assert len(split.shown()) == 2 + 4 + 1
    assert split.held_active and not shown & {e.row for e in split.held_active}
    assert len(split.held_active) == 4 * 2 + 2
    assert all(e.interval is not None for e in split.held_active)
    # A "zero" example with any active token is not a clean negative.
    assert [e.row for e in split.held_zero] == [70]


def test_pick_across_intervals_spans_levels():
    exs = [ex("interval", r, [1.0], interval=r % 4) for r in range(40)]
    picked = pick_across_intervals(exs, 6, random.Random(0))
    assert [e.interval for e in picked] == [3, 2, 1, 0, 3, 2]


def test_balanced_accuracy_by_hand():
    # 3 positives, 2 found; 2 negatives, 1 rejected: (2/3 + 1/2) / 2.
    pred = [True, True, False, False, True]
    act = [True, True, True, False, False]
    assert balanced_accuracy(pred, act) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert balanced_accuracy([True, True], [True, False]) == 0.5  # says yes to everything
    assert balanced_accuracy([False, True], [False, True]) == 1.0
    with pytest.raises(ValueError):
        balanced_accuracy([True], [True, False])


def test_pearson_by_hand():
    assert pearson([0, 0, 10, 0], [0, 0, 3.5, 0]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([0, 0, 0], [1, 2, 3]) is None


def test_rubric_summary_by_interval():
    ratings = [(0, 0), (0, 1), (2, 3), (2, 2), (2, 3)]
    s = rubric_summary(ratings, n_intervals=3)
    assert s["mean"] == pytest.approx(9 / 5)
    assert s["counts"] == [1, 1, 1, 2]
    assert s["per_interval"][0] == {"interval": 0, "counts": [1, 1, 0, 0], "mean": 0.5}
    assert s["per_interval"][1]["mean"] is None
    assert s["per_interval"][2]["mean"] == pytest.approx(8 / 3)


def test_judge_answer_validation():
    assert _ratings(2)({"ratings": [0, 3]}) == [0, 3]
    for bad in ({"ratings": [0]}, {"ratings": [0, 4]}, {"ratings": [True, 1]}, {"r": []}):
        with pytest.raises(ParseError):
            _ratings(2)(bad)
    assert _simulated(3)({"activations": [[2, 7]]}) == [0.0, 0.0, 7.0]
    for bad in ({"activations": [[3, 1]]}, {"activations": [[0, 11]]}, {"activations": [1]}):
        with pytest.raises(ParseError):
            _simulated(3)(bad)


def test_fuzzed_marks_avoid_the_real_tokens():
    e = ex("interval", 0, [0.0, 4.0, 0.0, 2.0, 0.0, 0.0])
    marks = fuzz_marks(e, 10.0, 0.0, random.Random(1))
    assert len(marks) == 2 and not set(marks) & {1, 3}


def test_transcript_and_json_end():
    text = transcript([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text.endswith("### Assistant:\n") and "### User:\nU" in text
    assert json_end('{"a": "}{", "b": {"c": 1}} trailing') == len('{"a": "}{", "b": {"c": 1}}')
    assert json_end('{"a": 1') is None


def test_local_backend_generates_json_prefixed_reply(tiny_model_dir):
    from monosemantic.models import load_model

    lm = load_model(str(tiny_model_dir))
    b = LocalBackend(str(tiny_model_dir), lm=lm)
    done = b.complete([{"role": "user", "content": "the golden gate"}], max_tokens=5,
                      temperature=0.0, response_format="json")
    assert done.text.startswith("{") and 1 <= done.output_tokens <= 5
    assert done.input_tokens > 3 and done.cost_usd == 0.0
    again = b.complete([{"role": "user", "content": "the golden gate"}], max_tokens=5,
                       temperature=0.0, response_format="json")
    assert again.text == done.text  # greedy decoding is deterministic


def test_few_shot_turns_come_before_the_real_prompt():
    import json

    card = card_with()
    split = split_examples(card, SplitOptions())
    plain = explainer_messages(card, split, PromptOptions())
    shots = explainer_messages(card, split, PromptOptions(few_shot=True))
    assert [m["role"] for m in plain] == ["system", "user"]
    assert [m["role"] for m in shots] == ["system", "user", "assistant", "user", "assistant",
                                          "user"]
    assert shots[-1] == plain[-1]
    for m in shots[2:5:2]:
        assert set(json.loads(m["content"])) == {"label", "explanation"}


def test_local_backend_uses_the_chat_template_when_there_is_one(tiny_model_dir):
    from monosemantic.models import load_model

    lm = load_model(str(tiny_model_dir))
    b = LocalBackend(str(tiny_model_dir), lm=lm)
    msgs = [{"role": "user", "content": "the fox"}]
    plain = lm.tokenizer.decode(b.prompt_ids(msgs, "{")[0])
    assert "### User:" in plain and plain.endswith("### Assistant:\n{")
    lm.tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
                                  "{% endfor %}{% if add_generation_prompt %}<|model|>{% endif %}")
    templated = lm.tokenizer.decode(b.prompt_ids(msgs, "{")[0])
    assert "### User:" not in templated and templated.endswith("<|model|>{")
    assert "the fox" in templated
