"""The text feature card: a feature that never fired says over how many analysed tokens."""

from monosemantic.featuredb.card import format_card
from monosemantic.featuredb.reader import FeatureCard


def _never_fired() -> FeatureCard:
    return FeatureCard(id=3, max_act=0.0, count=0, density=0.0, mean_act=0.0, top=[],
                       intervals=[], random=[], zero=[], histogram=None, logits_up=[],
                       logits_down=[], neighbours={}, explanations=[], scores=[])


def test_never_fired_card_names_the_analysed_tokens():
    text = format_card(_never_fired(), analysed_tokens=100_000)
    assert "never fired in the 100,000 analysed tokens" in text
    assert "dead" not in text
    assert "never fired in the analysed tokens" in format_card(_never_fired())
