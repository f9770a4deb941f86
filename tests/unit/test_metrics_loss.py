"""CE / KL / loss-recovered math on plain logits tensors."""

import math

import pytest
import torch

from monosemantic.evals import loss as loss_mod
from monosemantic.evals.loss import SplicedLossAccumulator, ce_and_kl, next_token_targets


def _logits_from_probs(probs_BSV: torch.Tensor) -> torch.Tensor:
    return torch.log(probs_BSV)


def test_next_token_targets_shift_and_mask():
    tokens_BS = torch.tensor([[1, 5, 6, 7]])
    splice_BS = torch.tensor([[False, True, True, True]])
    targets_BS, score_BS = next_token_targets(tokens_BS, splice_BS)
    assert targets_BS.tolist() == [[5, 6, 7, 0]]
    assert score_BS.tolist() == [[False, True, True, False]]
    assert splice_BS.tolist() == [[False, True, True, True]]  # input untouched


def test_ce_and_kl_hand_computed():
    # Vocabulary of 2; one scored position predicting token 1.
    p = torch.tensor([[[0.5, 0.5]]])
    q = torch.tensor([[[0.25, 0.75]]])
    targets_BS = torch.tensor([[1]])
    ce_p, ce_q, kl = ce_and_kl(_logits_from_probs(p), _logits_from_probs(q), targets_BS)
    assert ce_p.item() == pytest.approx(math.log(2))
    assert ce_q.item() == pytest.approx(-math.log(0.75))
    assert kl.item() == pytest.approx(0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75))
    _, _, kl_self = ce_and_kl(_logits_from_probs(p), _logits_from_probs(p), targets_BS)
    assert kl_self.item() == pytest.approx(0.0, abs=1e-7)
    ce_only, none_q, none_kl = ce_and_kl(_logits_from_probs(q), None, targets_BS)
    assert ce_only.item() == pytest.approx(-math.log(0.75)) and none_q is None and none_kl is None


def test_kl_with_zero_probabilities():
    p = torch.tensor([[[-math.inf, 0.0]]])  # p = (0, 1): the 0 term must vanish, not give nan
    q = torch.tensor([[[0.0, 0.0]]])  # q = (0.5, 0.5)
    _, _, kl = ce_and_kl(p, q, torch.tensor([[1]]))
    assert kl.item() == pytest.approx(math.log(2))
    _, _, kl_inf = ce_and_kl(q, p, torch.tensor([[1]]))  # p_clean > 0 where q = 0: infinite
    assert math.isinf(kl_inf.item())


def test_chunking_does_not_change_results(monkeypatch):
    torch.manual_seed(0)
    logits_p, logits_q = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    whole = ce_and_kl(logits_p, logits_q, targets)
    monkeypatch.setattr(loss_mod, "_ELEMENTS_PER_CHUNK", 30)  # 2 rows per chunk, ragged end
    chunked = ce_and_kl(logits_p, logits_q, targets)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b)
    ref = torch.nn.functional.cross_entropy(logits_p.reshape(-1, 11), targets.reshape(-1),
                                            reduction="none")
    torch.testing.assert_close(whole[0].reshape(-1), ref)


def test_loss_recovered_hand_computed():
    # Tokens [BOS, a, b]: position 0 is not spliced, position 2 has no target -> one scored
    # prediction (position 1 predicting token 2). Clean p(target)=0.8, spliced 0.5, zero 0.2.
    V = 3
    tokens_BS = torch.tensor([[0, 1, 2]])
    splice_BS = torch.tensor([[False, True, True]])

    def logits(p_target: float, junk: float = 0.3) -> torch.Tensor:
        probs_BSV = torch.full((1, 3, V), 1.0 / V)
        probs_BSV[0, 0] = torch.tensor([junk, 1 - junk, 0.0]) + 1e-9  # unscored: must not matter
        rest = (1 - p_target) / 2
        probs_BSV[0, 1] = torch.tensor([rest, rest, p_target])
        return torch.log(probs_BSV)

    acc = SplicedLossAccumulator()
    acc.update_from_logits(logits(0.8), logits(0.5, junk=0.9), logits(0.2, junk=0.01),
                           tokens_BS, splice_BS)
    r = acc.result()
    ce_clean, ce_spliced, ce_zero = -math.log(0.8), -math.log(0.5), -math.log(0.2)
    assert r["n_predictions"] == 1
    assert r["ce_clean"] == pytest.approx(ce_clean)
    assert r["ce_spliced"] == pytest.approx(ce_spliced)
    assert r["ce_zero"] == pytest.approx(ce_zero)
    assert r["delta_ce"] == pytest.approx(ce_spliced - ce_clean)
    assert r["loss_recovered"] == pytest.approx((ce_zero - ce_spliced) / (ce_zero - ce_clean))
    p, q = torch.tensor([0.1, 0.1, 0.8]), torch.tensor([0.25, 0.25, 0.5])
    assert r["kl"] == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-5)


def test_loss_recovered_extremes_and_streaming():
    torch.manual_seed(0)
    tokens_BS = torch.randint(0, 7, (3, 6))
    splice_BS = torch.ones(3, 6, dtype=torch.bool)
    clean, zero = torch.randn(3, 6, 7), torch.randn(3, 6, 7)
    acc_identity, acc_zero = SplicedLossAccumulator(), SplicedLossAccumulator()
    acc_identity.update_from_logits(clean, clean, zero, tokens_BS, splice_BS)
    acc_zero.update_from_logits(clean, zero, zero, tokens_BS, splice_BS)
    assert acc_identity.result()["loss_recovered"] == pytest.approx(1.0)
    assert acc_identity.result()["kl"] == pytest.approx(0.0, abs=1e-6)
    assert acc_zero.result()["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    # Streaming per row equals one batch.
    spliced = clean + 0.5 * torch.randn(3, 6, 7)
    whole, rows = SplicedLossAccumulator(), SplicedLossAccumulator()
    whole.update_from_logits(clean, spliced, zero, tokens_BS, splice_BS)
    for b in range(3):
        s = slice(b, b + 1)
        rows.update_from_logits(clean[s], spliced[s], zero[s], tokens_BS[s], splice_BS[s])
    assert rows.result() == pytest.approx(whole.result())


def test_loss_recovered_undefined_without_gap():
    acc = SplicedLossAccumulator()
    logits = torch.randn(1, 4, 5)
    acc.update_from_logits(logits, logits, logits, torch.tensor([[1, 2, 3, 4]]),
                           torch.ones(1, 4, dtype=torch.bool))
    assert math.isnan(acc.result()["loss_recovered"])
    with pytest.raises(ValueError):
        SplicedLossAccumulator().result()
