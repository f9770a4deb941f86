"""Prompts of the explainer and of the four judges, and how an example window is written.

In an excerpt, every token whose activation is above `mark_fraction` x the feature's maximum
(default: every token with a positive activation) is written <<like this>>; the line under it
gives each marked token's activation level, round(10 x act / max) clipped to [1, 10].
PROMPT_VERSION changes whenever a prompt's wording or format changes; it is stored with every
explanation and score, so results from different prompts are never mixed up.
"""

from __future__ import annotations

from dataclasses import dataclass

from monosemantic.featuredb.reader import Example, FeatureCard
from monosemantic.interp.backends.base import Message
from monosemantic.interp.examples import ExampleSplit

PROMPT_VERSION = "interp-v1"

RUBRIC_TEXT = (
    "0 = the explanation is irrelevant throughout the excerpt; "
    "1 = related to the excerpt, but not near the highlighted text, or only vaguely; "
    "2 = loosely related to the highlighted text or to the text right around it; "
    "3 = cleanly identifies the highlighted text.")


def clean(token: str) -> str:
    """A token as it is shown: whitespace control characters made visible."""
    return token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def level(act: float, max_act: float) -> int:
    """Activation level 1..10 of a marked token (10 = the feature's maximum)."""
    if max_act <= 0:
        return 1
    return max(1, min(10, round(10 * act / max_act)))


def marked_positions(acts: list[float], max_act: float, mark_fraction: float = 0.0) -> list[int]:
    """Indices of the tokens that are marked as activating."""
    return [i for i, a in enumerate(acts) if a > 0 and a > mark_fraction * max_act]


def format_excerpt(tokens: list[str], marks: list[int]) -> str:
    """The window with the tokens at `marks` written <<token>>."""
    chosen = set(marks)
    return "".join(f"<<{clean(t)}>>" if i in chosen else clean(t) for i, t in enumerate(tokens))


def format_example(ex: Example, max_act: float, mark_fraction: float = 0.0,
                   levels: bool = True) -> str:
    """An excerpt with its activating tokens marked, and their levels on the next line."""
    marks = marked_positions(ex.acts, max_act, mark_fraction)
    text = format_excerpt(ex.tokens, marks)
    if levels and marks:
        text += "\n   activations: " + ", ".join(
            f"{clean(ex.tokens[i])!r} {level(ex.acts[i], max_act)}" for i in marks)
    return text


def _numbered(excerpts: list[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(excerpts, 1))


@dataclass
class PromptOptions:
    """How excerpts are written in prompts."""

    mark_fraction: float = 0.0
    """Mark tokens whose activation exceeds this fraction of the feature's maximum (0 = every
    token with a positive activation)."""
    logit_tokens: int = 10
    """Tokens listed for the feature's top and bottom logit effects (0 = none)."""
    few_shot: bool = False
    """Show the explainer two worked examples (made-up features) as earlier turns: small
    local models then answer in the format instead of rambling; strong models do not need it."""


# Two made-up features, as (user, assistant) turns in the format of the real prompt.
FEW_SHOT = (
    (("Strongest activations:\n1. for x in<< range>>(10):\n   activations: ' range' 10\n"
     "2. idx =<< range>>(len(a))\n   activations: ' range' 9\n\nSamples across activation "
     "levels (highest first):\n1. [level 3-4] items = list(<<map>>(f, xs))\n   activations: "
     "'map' 3"),
     ('{"label": "range() and similar iterators", "explanation": "The builtin range, and '
     'more weakly map, when called to produce an iterable."}')),
    (("Strongest activations:\n1. The meeting is on<< Monday>> morning\n   activations: "
     "' Monday' 10\n2. closed on<< Sundays>> and holidays\n   activations: ' Sundays' 8\n\n"
     "Samples across activation levels (highest first):\n1. [level 2-3] see you next<< week>>"
     "\n   activations: ' week' 2"),
     ('{"label": "days of the week", "explanation": "Names of weekdays in dates and '
     'schedules, and weakly other calendar words like week."}')),
)


EXPLAINER_SYSTEM = (
    "You are an interpretability researcher explaining a feature of a language model. A "
    "feature is a direction in the model's activations that is active on some tokens. You see "
    "text excerpts where it is active: active tokens are marked <<like this>>, and the line "
    "under each excerpt gives their activation levels from 1 to 10 (10 = the feature's "
    "strongest activation). The excerpts span every activation level, not only the strongest. "
    "Find what the marked tokens have in common (the token itself, its context, or what the "
    "model is about to write) and say it as specifically as you can; the tokens whose "
    "probability the feature raises or lowers are a further hint.\n"
    'Reply with a JSON object only: {"label": "<a short name, 2 to 6 words>", '
    '"explanation": "<one sentence>"}.')

def explainer_messages(card: FeatureCard, split: ExampleSplit,
                       opts: PromptOptions | None = None) -> list[Message]:
    """The explainer's prompt for one feature."""
    opts = opts or PromptOptions()

    def fmt(ex: Example) -> str:
        return format_example(ex, card.max_act, opts.mark_fraction)

    parts = [f"Feature #{card.id}: active on {card.density:.3%} of tokens.", "",
             "Strongest activations:", _numbered([fmt(ex) for ex in split.top])]
    lower = [(idx, lo, hi, exs) for idx, lo, hi, exs in split.intervals]
    if lower:
        parts += ["", "Samples across activation levels (highest first):"]
        excerpts = [f"[level {level(lo, card.max_act)}-{level(hi, card.max_act)}] {fmt(ex)}"
                    for _, lo, hi, exs in lower for ex in exs]
        parts.append(_numbered(excerpts))
    if split.random:
        parts += ["", "Random active excerpts:", _numbered([fmt(ex) for ex in split.random])]
    if opts.logit_tokens > 0 and card.logits_up:
        up = ", ".join(repr(clean(t)) for t, _ in card.logits_up[:opts.logit_tokens])
        down = ", ".join(repr(clean(t)) for t, _ in card.logits_down[:opts.logit_tokens])
        parts += ["", f"Tokens whose probability the feature raises: {up}",
                  f"Tokens whose probability it lowers: {down}"]
    parts += ["", "Explain the feature as a JSON object with \"label\" and \"explanation\"."]
    shots: list[Message] = []
    if opts.few_shot:
        for user, reply in FEW_SHOT:
            shots += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return [{"role": "system", "content": EXPLAINER_SYSTEM}, *shots,
            {"role": "user", "content": "\n".join(parts)}]


def rubric_messages(explanation: str, excerpts: list[str]) -> list[Message]:
    """Rate each highlighted excerpt 0-3 against the explanation (the paper's rubric)."""
    system = ("You judge explanations of a language-model feature. For each excerpt, rate how "
              "well the explanation describes the text marked <<like this>>: " + RUBRIC_TEXT +
              '\nReply with a JSON object only: {"ratings": [<one integer 0-3 per excerpt, '
              "in order>]}.")
    user = f"Explanation: {explanation}\n\nExcerpts:\n{_numbered(excerpts)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def detection_messages(explanation: str, excerpts: list[str]) -> list[Message]:
    """Which excerpts contain text the feature (as explained) is active on?"""
    system = ("You test an explanation of a language-model feature. The feature is active on "
              "some of the excerpts below and on none of the tokens of the others. Using only "
              "the explanation, decide in which excerpts it is active.\n"
              'Reply with a JSON object only: {"active": [<numbers of the excerpts where the '
              "feature is active; [] if none>]}.")
    user = f"Explanation: {explanation}\n\nExcerpts:\n{_numbered(excerpts)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def fuzzing_messages(explanation: str, excerpts: list[str]) -> list[Message]:
    """Which excerpts have the right tokens marked?"""
    system = ("You test an explanation of a language-model feature. In each excerpt some tokens "
              "are marked <<like this>>. In some excerpts the marks are exactly where the "
              "feature is active; in the others they were put on arbitrary tokens. Using only "
              "the explanation, decide which excerpts are marked correctly.\n"
              'Reply with a JSON object only: {"correct": [<numbers of the correctly marked '
              "excerpts; [] if none>]}.")
    user = f"Explanation: {explanation}\n\nExcerpts:\n{_numbered(excerpts)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def simulation_messages(explanation: str, tokens: list[str]) -> list[Message]:
    """Predict the activation (0-10) of every token of one excerpt."""
    system = ("You simulate a language-model feature from its explanation. For the numbered "
              "tokens of the excerpt, predict the feature's activation on each token from 0 "
              "(inactive) to 10 (strongest). Most tokens are usually 0.\n"
              'Reply with a JSON object only: {"activations": [[<token number>, <0-10>], ...]} '
              "listing only the tokens you predict above 0.")
    listing = "\n".join(f"{i} {clean(t)!r}" for i, t in enumerate(tokens))
    user = f"Explanation: {explanation}\n\nExcerpt: {''.join(clean(t) for t in tokens)}\n\n" \
           f"Tokens:\n{listing}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
