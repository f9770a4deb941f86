"""`monosemantic explain / score / neurons` end to end on a tiny run, with a loopback server
speaking the OpenAI API as the LLM.

The fake LLM is an oracle: the explainer writes "feature N", and the judges look the feature's
real examples up in the database, so a correct pipeline (held-out examples, shuffling, index
bookkeeping) must score exactly 1.0 on detection and fuzzing, 3 on the rubric and about 1.0
on simulation; a judge that answers "all of them" must score exactly 0.5 on detection."""

import json
import re
import sqlite3

import pytest
import torch

from helpers.fake_llm import FakeLLMServer
from helpers.word_store import harvest_word_store
from monosemantic.activations import ActivationStore
from monosemantic.cli import main
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.interp.prompts import clean, format_excerpt, marked_positions
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.0.hook_resid_pre"
WORDS = ["golden", "gate", "bridge", "sparse", "feature", "token", "model", "import", "numpy",
         "return", "value", "def", "class", "the", "quick", "brown", "fox"]


def planted_sae(lm, store, n_features=4):
    """Feature j fires exactly on one token of middling frequency (its embedding direction,
    with a threshold halfway between it and the closest other token), so that many windows
    hold no activation at all (clean negatives)."""
    tokens_N = torch.cat([b.tokens_N for b in store.iter_rows(4096)])
    ids, counts = torch.unique(tokens_N, return_counts=True)
    emb_VD = lm.model.get_input_embeddings().weight.detach()
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=lm.d_model, n_features=n_features))
    frequent = ids[counts.argsort(descending=True)][len(ids) // 3:][:n_features]
    for j, target in enumerate(frequent.tolist()):
        unit_D = emb_VD[target] / emb_VD[target].norm()
        scores = emb_VD[ids] @ unit_D
        others = scores[ids != target]
        with torch.no_grad():
            sae.W_enc[:, j] = unit_D
            sae.W_dec[j] = unit_D
            sae.b_enc[j] = -float(others.max() + (scores.max() - others.max()) / 2)
    return sae


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("interp_run")
    store = harvest_word_store(root, tiny_model_dir, HOOK, WORDS)
    lm = load_model(str(tiny_model_dir))
    sae = planted_sae(lm, store)
    save_sae(sae, root / "run" / "sae", {"model": str(tiny_model_dir), "hook": HOOK,
                                         "store": str(root / "store"),
                                         "holdout_rows": [store.n_rows - 200, store.n_rows]})
    assert main(["analyze", str(root / "run"), "--batch-size", "256", "--top-k", "6",
                 "--logit-tokens", "3", "--neighbours", "2", "--feature-map", "false",
                 "--zero-rows-per-batch", "8", "--zero-examples", "20", "--device", "cpu"]) == 0
    return root / "run"


def excerpts(user: str) -> list[str]:
    body = user.split("Excerpts:\n", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", body, re.MULTILINE)]


class Oracle:
    """Answers every prompt correctly from the feature database."""

    def __init__(self, run, all_yes=False):
        self.db = FeatureDB(run)
        self.all_yes = all_yes

    def windows(self, feature):
        card = self.db.feature(feature)
        exs = card.top + card.random + card.zero + [e for iv in card.intervals
                                                    for e in iv.examples]
        return card, exs

    def __call__(self, messages):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "explaining a feature" in system:
            feature = int(re.search(r"Feature #(\d+)", user).group(1))
            return json.dumps({"label": f"feature {feature}",
                               "explanation": f"Whatever feature {feature} fires on."})
        feature = int(re.search(r"Whatever feature (\d+)", user).group(1))
        card, exs = self.windows(feature)
        real = {format_excerpt(e.tokens, marked_positions(e.acts, card.max_act)) for e in exs}
        active = {format_excerpt(e.tokens, []) for e in exs if max(e.acts) > 0}
        if "rate how well" in system:
            return json.dumps({"ratings": [3 if x in real else 0 for x in excerpts(user)]})
        if "decide in which excerpts" in system:
            items = excerpts(user)
            return json.dumps({"active": [i + 1 for i, x in enumerate(items)
                                          if self.all_yes or x in active]})
        if "which excerpts are marked correctly" in system:
            return json.dumps({"correct": [i + 1 for i, x in enumerate(excerpts(user))
                                           if x in real]})
        if "simulate" in system:
            text = user.split("Excerpt: ", 1)[1].split("\n\nTokens:", 1)[0]
            ex = next(e for e in exs if "".join(clean(t) for t in e.tokens) == text)
            return json.dumps({"activations": [[i, round(10 * a / card.max_act)]
                                               for i, a in enumerate(ex.acts) if a > 0]})
        raise AssertionError(f"unexpected prompt: {system[:80]}")


def llm_args(url):
    return ["--llm", "openai", "--model", "oracle", "--base-url", url + "/v1",
            "--api-key-env", "FAKE_KEY"]


def test_explain_and_score_end_to_end(run, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_KEY", "test-key")
    with FeatureDB(run) as db:
        alive = [s["id"] for s in db.stats() if s["count"] > 0]
    feats = [str(f) for f in alive[:3]]
    with FakeLLMServer(Oracle(run)) as srv:
        assert main(["explain", str(run), "--features", *feats, *llm_args(srv.url),
                     "--price-in", "1", "--price-out", "2"]) == 0
        n_explain = len(srv.requests)
        assert n_explain == 3
        # Without --redo, features this explainer already explained are skipped.
        assert main(["explain", str(run), "--features", *feats, *llm_args(srv.url)]) == 0
        assert len(srv.requests) == 3
        assert main(["score", str(run), *llm_args(srv.url),
                     "--summary", str(run / "summary.json")]) == 0
        n_score = len(srv.requests)
        assert n_score > n_explain
        # Everything again (--redo): all answers come from the cache.
        assert main(["explain", str(run), "--features", *feats, *llm_args(srv.url),
                     "--redo", "true"]) == 0
        assert main(["score", str(run), *llm_args(srv.url), "--redo", "true"]) == 0
        assert len(srv.requests) == n_score
    out = capsys.readouterr().out
    assert "answered from the cache" in out and "cost $" in out
    summary = json.loads((run / "summary.json").read_text())["scores"]
    assert set(summary) == {"rubric", "detection", "fuzzing", "simulation"}
    con = sqlite3.connect(run / "features.sqlite")
    rows = con.execute("SELECT feature, explainer, text, details FROM explanations").fetchall()
    assert {r[0] for r in rows} == set(alive[:3]) and len(rows) == 6
    details = json.loads(rows[0][3])
    assert rows[0][1] == "openai/oracle/interp-v1" and details["label"].startswith("feature")
    assert details["cost_usd"] > 0 and details["input_tokens"] > 0
    scores = con.execute("SELECT feature, scorer, score, details FROM scores").fetchall()
    con.close()
    by = {}
    for _feature, scorer, value, det in scores:
        by.setdefault(scorer, []).append(value)
        assert json.loads(det)["judge"] == "openai/oracle"
    assert by["detection"] and all(v == 1.0 for v in by["detection"])
    assert by["fuzzing"] and all(v == 1.0 for v in by["fuzzing"])
    assert by["specificity_rubric"] and all(v == 3.0 for v in by["specificity_rubric"])
    assert by["simulation"] and all(v > 0.95 for v in by["simulation"])
    with FeatureDB(run) as db:  # the browser's reader sees them
        card = db.feature(alive[0])
    assert card.explanations and {s["scorer"] for s in card.scores} >= {"detection"}


def test_a_judge_that_says_yes_to_all_scores_one_half(run, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_KEY", "test-key")
    with FakeLLMServer(Oracle(run, all_yes=True)) as srv:
        assert main(["explain", str(run), "--sample", "2", *llm_args(srv.url)]) == 0
        args = llm_args(srv.url)
        args[args.index("oracle")] = "yes-man"
        assert main(["score", str(run), "--scorers", "detection", *args,
                     "--cache", str(tmp_path / "c.sqlite")]) == 0
    con = sqlite3.connect(run / "features.sqlite")
    values = [json.loads(d) | {"v": v} for v, d in con.execute(
        "SELECT score, details FROM scores WHERE scorer='detection'")]
    con.close()
    mine = [d["v"] for d in values if d["judge"] == "openai/yes-man"]
    assert mine and all(v == 0.5 for v in mine)


def test_bad_feature_selection_and_wrong_key_are_clear(run, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_KEY", "wrong")
    assert main(["explain", str(run), "--all", "true", "--sample", "2", "--llm", "local"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    with FakeLLMServer(Oracle(run)) as srv:
        assert main(["explain", str(run), "--features", "1", "--redo", "true",
                     "--cache", "off", *llm_args(srv.url)]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "FAKE_KEY" in err and "Traceback" not in err


def test_neuron_database_counts_match_the_harvest(run, tmp_path):
    out = tmp_path / "neurons"
    assert main(["neurons", str(run), "--tokens", "400", "--out", str(out), "--keep-store",
                 "true", "--top-k", "4", "--logit-tokens", "3", "--device", "cpu"]) == 0
    store = ActivationStore(out / "acts")
    acts_ND = torch.cat([b.acts_ND for b in store.iter_rows(4096)]).float()
    assert store.hook == "blocks.0.mlp.hook_post"
    with FeatureDB(out) as db:
        stats = db.stats()
        card = db.feature(int((acts_ND > 0).sum(0).argmax()))
    assert len(stats) == acts_ND.shape[1]
    assert [s["count"] for s in stats] == (acts_ND > 0).sum(0).tolist()
    assert [s["max_act"] for s in stats] == pytest.approx(acts_ND.max(0).values.clamp_min(0)
                                                          .tolist(), rel=1e-5)
    assert card.top and card.logits_up and db.meta["kind"] == "neurons"


def test_unparseable_judge_answers_are_counted_not_stored(run, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_KEY", "test-key")
    oracle = Oracle(run)

    def sloppy(messages):
        if "explaining a feature" in messages[0]["content"]:
            return oracle(messages)
        return "I think excerpts 1 and 2."

    with FakeLLMServer(sloppy) as srv:
        args = llm_args(srv.url)
        args[args.index("oracle")] = "sloppy"
        assert main(["explain", str(run), "--sample", "1", *args]) == 0
        assert main(["score", str(run), "--scorers", "detection", "rubric", *args,
                     "--parse-retries", "1", "--summary", str(tmp_path / "s.json")]) == 0
        n_features = json.loads((tmp_path / "s.json").read_text())["features"]
        # Two attempts per judge call, one call per scorer (few excerpts per feature).
        assert len(srv.requests) >= 1 + 2 * 2 * n_features
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["scores"] == {}
    assert summary["not_scored"]["detection"]["unparsed"] == n_features
    assert summary["not_scored"]["rubric"]["unparsed"] == n_features
