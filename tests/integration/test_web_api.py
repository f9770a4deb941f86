"""The browser's JSON API and pages on a tiny trained run: answers equal the database and the
model, bad input gets a clear 4xx, the database stays read-only, no path escapes the run, and a
full model queue answers 503."""

import hashlib
import json
import sqlite3
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from helpers.web_run import EXPLAINED, N_FEATURES, annotate_copy, build_tiny_run
from monosemantic.cli import build_parser
from monosemantic.config import dataclass_from_namespace
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.runs import ModelOptions
from monosemantic.web import ServeConfig, create_app


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("web_api")
    run = build_tiny_run(root, tiny_model_dir)
    return run, annotate_copy(run, root / "annotated")


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(ServeConfig(runs[1], device="cpu"))) as c:
        yield c


@pytest.fixture(scope="module")
def plain_client(runs):
    with TestClient(create_app(ServeConfig(runs[0], device="cpu"))) as c:
        yield c


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_feature_json_equals_the_database(client, runs):
    with FeatureDB(runs[1]) as db:
        card = db.feature(7)
    got = client.get("/api/features/7").json()
    assert got["id"] == 7 and got["max_act"] == pytest.approx(card.max_act)
    assert [ex["tokens"] for ex in got["top"]] == [ex.tokens for ex in card.top]
    assert [iv["share"] for iv in got["intervals"]] == pytest.approx(
        [iv.share for iv in card.intervals])
    assert got["explanations"][0]["text"] == EXPLAINED[7]
    assert got["explanations"][0]["details"] == {"examples": 5}  # JSON column decoded
    assert got["scores"][0]["score"] == 0.75
    co = got["neighbours"]["cooccurrence"]
    assert co == [{"feature": 3, "score": 0.5, "label": EXPLAINED[3]}]
    assert [n["feature"] for n in got["neighbours"]["decoder_cosine"]] == \
        [o for o, _ in card.neighbours["decoder_cosine"]]


def test_overview(client, runs):
    o = client.get("/api/overview").json()
    assert o["n_features"] == N_FEATURES and o["architecture"] == "topk" and o["k"] == 4
    # RUN/cfg.json nests the SAE's options under "sae"; the overview shows them flat.
    assert o["training"]["architecture"] == "topk" and o["training"]["k"] == 4
    assert o["training"]["n_features"] == N_FEATURES and o["training"]["steps"] == 40
    assert o["hook"] == "blocks.1.hook_resid_post"
    assert [r["step"] for r in o["curves"]["train"]] == [10, 20, 30, 40]
    assert [r["step"] for r in o["curves"]["eval"]] == [20, 40]
    assert o["eval"]["l0"] <= 4 and "loss_recovered" in o["eval"]
    hist = o["density_histogram"]
    with FeatureDB(runs[1]) as db:
        stats = db.stats()
    assert sum(hist["counts"]) + hist["n_never_fired"] == N_FEATURES
    assert hist["n_never_fired"] == sum(s["count"] == 0 for s in stats)
    assert hist["n_tokens"] == o["analysed_tokens"] > 0
    assert o["n_explained"] == len(EXPLAINED)


def test_overview_labels_every_dead_and_silent_figure_with_its_tokens(client, runs):
    o = client.get("/api/overview").json()
    extra = json.loads((runs[1] / "sae" / "monosemantic.json").read_text())["extra_metadata"]
    final = extra["training"]["final_train"]
    rows = {r["key"]: r for r in o["never_fired"]}
    assert set(rows) == {"training", "analysis", "held_out"}
    window = final["dead_window_tokens"]
    assert rows["training"]["tokens"] == window and rows["training"]["dead"]
    assert rows["training"]["fraction"] == final["dead_fraction"]
    assert rows["training"]["label"] == \
        f"dead (no activation in the last {window:,} training tokens)"
    assert rows["analysis"]["label"] == \
        f"never fired in the analysis ({o['analysed_tokens']:,} tokens)"
    assert rows["analysis"]["n"] == o["density_histogram"]["n_never_fired"]
    held = o["eval"]["silent_tokens"]
    assert rows["held_out"]["label"] == f"silent on {held:,} held-out tokens"
    assert not rows["held_out"]["dead"]
    for row in rows.values():
        assert f"{row['tokens']:,}" in row["label"]
    # The eval table's dead figure is the trainer's, with its window; no key calls silence dead.
    assert o["eval"]["dead_window_tokens"] == window
    assert {k for k in o["eval"] if "dead" in k} == \
        {"dead_fraction", "n_dead", "dead_window_tokens"}
    train = o["curves"]["train"]
    assert all(r["dead_window_tokens"] == window and r["dense_window_tokens"] > 0 for r in train)
    assert o["training"]["dead_window_tokens"] == window
    assert client.get("/api/features/0").json()["analysed_tokens"] == o["analysed_tokens"]
    assert client.get("/api/map").json()["analysed_tokens"] == o["analysed_tokens"]


def test_feature_list_sorted_and_paged(client, runs):
    with FeatureDB(runs[1]) as db:
        stats = db.stats()
    r = client.get("/api/features", params={"sort": "density", "order": "desc", "limit": 5,
                                            "start": 2}).json()
    want = sorted(sorted(stats, key=lambda s: s["id"]), key=lambda s: -s["density"])[2:7]
    assert [f["id"] for f in r["features"]] == [s["id"] for s in want]
    assert r["total"] == N_FEATURES
    alive = client.get("/api/features", params={"alive": "true", "limit": 1000}).json()
    assert alive["total"] == sum(s["count"] > 0 for s in stats)
    labelled = client.get("/api/features", params={"start": 7, "limit": 1}).json()["features"]
    assert labelled[0]["label"] == EXPLAINED[7]
    bad = client.get("/api/features", params={"sort": "nonsense"})
    assert bad.status_code == 422 and "sort" in bad.json()["error"]


def test_search_by_id_explanation_and_token(client, runs):
    hits = client.get("/api/search", params={"q": "5, 9"}).json()["hits"]
    assert [h["feature"] for h in hits] == [5, 9]
    hits = client.get("/api/search", params={"q": "golden BRIDGE"}).json()["hits"]
    assert [h["feature"] for h in hits] == [7] and hits[0]["match"] == "explanation"
    hits = client.get("/api/search", params={"q": "50%", "kind": "explanation"}).json()["hits"]
    assert hits == []  # LIKE wildcards in the query are literal
    # Token search: brute force over the top examples' peak tokens.
    with FeatureDB(runs[1]) as db:
        word = db.feature(0).top[0]
        token = word.tokens[word.peak]
        expected = {f for f in range(N_FEATURES)
                    if any(ex.tokens[ex.peak].strip().lower() == token.strip().lower()
                           for ex in db.examples(f, "top"))}
    hits = client.get("/api/search", params={"q": token.strip(), "kind": "token"}).json()["hits"]
    assert {h["feature"] for h in hits} == expected and 0 in expected
    peaks = [h["peaks"] for h in hits]
    assert peaks == sorted(peaks, reverse=True)


def test_map_points_with_clusters_and_pca_fallback(client, plain_client):
    m = client.get("/api/map").json()
    assert m["method"] == "umap" and m["id"] == list(range(N_FEATURES))
    assert m["cluster"][17] == 1 and m["cluster_labels"]["1"] == "cluster label 1"
    assert m["label"][7] == EXPLAINED[7] and m["label"][8] is None
    assert len(m["density"]) == N_FEATURES
    p = plain_client.get("/api/map").json()  # no map_coords: principal components of W_dec
    assert p["method"] == "pca" and len(p["x"]) == N_FEATURES
    assert any(abs(x) > 1e-6 for x in p["x"])


def test_pages_render(client):
    for path in ("/", "/feature/7", "/search?q=bridge", "/inspect", "/steer", "/map", "/docs"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "default-src 'self'" in r.headers["content-security-policy"]
        # Every script and style comes from this server.
        assert "http://" not in r.text and "https://" not in r.text, path
    assert 'data-feature="7"' in client.get("/feature/7").text
    for path in ("/feature/64", "/feature/abc", "/feature/-1"):
        r = client.get(path)
        assert r.status_code == 404 and "No such feature" in r.text
    assert client.get("/static/common.js").status_code == 200
    assert "/api/features/{feature_id}" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("path, status, words", [
    ("/api/features/64", 404, "does not exist"),
    ("/api/features/-3", 404, "does not exist"),
    ("/api/features/abc", 422, "whole number"),
    ("/api/features/1.5", 422, "whole number"),
    ("/api/features?start=-1", 422, "start"),
    ("/api/search?q=", 422, "q"),
    ("/api/search?q=x&kind=nonsense", 422, "kind"),
    ("/api/search?q=abc&kind=id", 422, "not a feature id"),
    ("/api/nope", 404, "no API endpoint"),
])
def test_bad_get_requests(client, path, status, words):
    r = client.get(path)
    assert r.status_code == status
    assert words in r.json()["error"]


def _steer(prompt="the golden gate", edits=None, **kw):
    return {"prompt": prompt, "edits": edits or [{"feature": 3, "value": 5}],
            "max_new_tokens": 4, **kw}


@pytest.mark.parametrize("body, status, words", [
    (_steer(edits=[{"feature": 3, "value": 101}]), 422, "out of range"),
    (_steer(edits=[{"feature": 3, "value": -1000}]), 422, "out of range"),
    (_steer(edits=[{"feature": 64, "value": 1}]), 404, "does not exist"),
    (_steer(edits=[{"feature": "x", "value": 1}]), 422, "valid integer"),
    (_steer(edits=[{"feature": 1, "value": 1}] * 2), 422, "listed twice"),
    (_steer(edits=[{"feature": i, "value": 1} for i in range(17)]), 422, "limit is 16"),
    (_steer(prompt="x" * 2001), 413, "limit is 2,000"),
    (_steer(prompt=""), 422, "prompt"),
    (_steer(max_new_tokens=201), 422, "max_new_tokens"),
    (_steer(temperature=-1), 422, "temperature"),
    (_steer(top_p=0), 422, "top_p"),
    (_steer(mode="nonsense"), 422, "mode"),
    (_steer(extra_field=1), 422, "extra_field"),
    ({"prompt": "x"}, 422, "edits"),
    ({"text": "x" * 2001}, 413, "characters"),
])
def test_bad_model_requests(client, body, status, words):
    path = "/api/inspect" if "text" in body else "/api/steer"
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert "Traceback" not in r.text


def test_oversized_body_is_refused_before_parsing(client):
    r = client.post("/api/inspect", content=b"x" * 1_000_001,
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'{"prompt": '])
def test_malformed_json(client, raw):
    r = client.post("/api/steer", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_unit_max_on_a_dead_feature_is_refused(client):
    dead = [i for i, m in enumerate(client.app.state.data.max_act_F) if m <= 0]
    if not dead:
        pytest.skip("no dead feature in this tiny run")
    r = client.post("/api/steer", json=_steer(edits=[{"feature": dead[0], "value": 2}]))
    assert r.status_code == 422 and "never fired" in r.json()["error"]


@pytest.mark.parametrize("path", [
    "/static/../rundata.py", "/static/%2e%2e/rundata.py", "/static/%2e%2e/%2e%2e/cli.py",
    "/static/..%2f..%2fcli.py", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
    "/static/....//....//etc/passwd", "/static/%252e%252e/app.py", "/../features.sqlite",
    "/features.sqlite", "/cfg.json", "/sae/cfg.json", "/api/features/..%2F..%2Fetc%2Fpasswd",
])
def test_no_path_reads_outside(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404, 422), path
    assert "SQLite format" not in r.text and "root:" not in r.text and "import" not in r.text


def test_database_is_read_only(client, runs):
    db_file = runs[1] / "features.sqlite"
    before = _sha(db_file)
    for path in ("/api/features/3", "/api/search?q=bridge", "/api/map", "/api/overview"):
        assert client.get(path).status_code == 200
    data = client.app.state.data
    assert not hasattr(data, "_con")  # one connection, FeatureDB's
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        data.db._con.execute("UPDATE features SET max_act = 0")
    assert _sha(db_file) == before


def test_inspect_matches_text_features(client, runs):
    from monosemantic.analysis.inspect import text_features
    from monosemantic.runs import RunDir

    text = "the golden gate bridge"
    r = client.post("/api/inspect", json={"text": text, "top": 3})
    assert r.status_code == 200, r.text
    got = r.json()
    lm, sae, hook = RunDir.open(runs[1]).load("cpu")
    tf = text_features(lm, sae, hook, text)
    assert [t["token"] for t in got["tokens"]] == tf.tokens
    for t, f_F in zip(got["tokens"], tf.f_SF):
        best = f_F.topk(min(3, int((f_F > 0).sum())))
        assert [f["feature"] for f in t["features"]] == best.indices.tolist()
        assert [f["activation"] for f in t["features"]] == pytest.approx(best.values.tolist())
    acts = [f["activation"] for f in got["features"]]
    assert acts == sorted(acts, reverse=True)
    assert acts[0] == pytest.approx(float(tf.f_SF.max()))
    one = client.post("/api/inspect", json={"text": text, "feature": 5}).json()
    assert one["feature_acts"] == pytest.approx(tf.f_SF[:, 5].tolist())
    missing = client.post("/api/inspect", json={"text": text, "feature": N_FEATURES})
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]


def test_steer_returns_both_continuations(client):
    r = client.post("/api/steer", json=_steer(edits=[{"feature": 3, "value": 50}]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["unsteered"] and out["steered"] and out["edits"] == ["3=50x"]
    assert out["kl_next_token"] >= 0 and "neutral_loss_delta" in out
    # Same request, same seed: same answer (greedy).
    assert client.post("/api/steer", json=_steer(edits=[{"feature": 3, "value": 50}])).json() \
        == out
    assert out["include_special"] is False


def test_steer_include_special_reaches_the_steering(client):
    r = client.post("/api/steer", json=_steer(edits=[{"feature": 3, "value": 50}],
                                              include_special=True))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["include_special"] is True
    assert client.post("/api/steer", json=_steer(include_special="maybe")).status_code == 422


def test_filter_by_prompts_matches_brute_force(client, runs):
    from monosemantic.analysis.inspect import text_features
    from monosemantic.runs import RunDir

    pos, neg = ["the golden gate bridge", "golden fox"], ["import numpy"]
    r = client.post("/api/filter", json={"positive": pos, "negative": neg, "threshold": 0.2,
                                         "top": 200})
    assert r.status_code == 200, r.text
    lm, sae, hook = RunDir.open(runs[1]).load("cpu")
    max_F = torch.tensor(client.app.state.data.max_act_F)
    thr_F = torch.where(max_F > 0, 0.2 * max_F, torch.full_like(max_F, 0.2))
    pos_PF = torch.stack([text_features(lm, sae, hook, t).f_SF.max(0).values for t in pos])
    neg_NF = torch.stack([text_features(lm, sae, hook, t).f_SF.max(0).values for t in neg])
    passing = ((pos_PF > thr_F).all(0) & ~(neg_NF > thr_F).any(0)).nonzero().flatten().tolist()
    hits = r.json()["hits"]
    assert passing and sorted(h["feature"] for h in hits) == sorted(passing)
    mins = [h["min_positive"] for h in hits]
    assert mins == sorted(mins, reverse=True) and all("max_act" in h for h in hits)


@pytest.mark.parametrize("body, words", [
    ({"positive": []}, "positive"),
    ({"positive": ["a", "  "]}, "empty"),
    ({"positive": ["a"] * 17}, "limit is 16"),
    ({"positive": ["a"], "threshold": -1}, "threshold"),
    ({"positive": ["x" * 2001]}, "limit is 2,000"),
])
def test_bad_filter_requests(client, body, words):
    r = client.post("/api/filter", json=body)
    assert 400 <= r.status_code < 500 and words in r.json()["error"]


class BlockingBackend:
    """Stands in for the model: each job waits until released."""

    loaded = True

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def inspect(self, text, top, feature=None):
        self.started.set()
        assert self.release.wait(10)
        return {"tokens": [{"token": text, "features": []}], "features": []}


def test_full_queue_answers_503_and_pages_keep_serving(runs):
    backend = BlockingBackend()
    app = create_app(ServeConfig(runs[0], queue=1), backend=backend)
    with TestClient(app) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/api/inspect",
                                                                  json={"text": "a"})))
        t.start()
        assert backend.started.wait(10)
        start = time.perf_counter()
        busy = c.post("/api/inspect", json={"text": "b"})
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
        # Pages and the database API answer while the model job runs.
        assert c.get("/api/features/1").status_code == 200 and c.get("/").status_code == 200
        assert time.perf_counter() - start < 5
        backend.release.set()
        t.join(10)
        assert first["r"].status_code == 200
        assert c.post("/api/inspect", json={"text": "c"}).status_code == 200  # slot freed
        assert c.get("/api/status").json()["jobs_pending"] == 0


def test_missing_model_answers_503_and_pages_still_work(runs, tmp_path):
    no_model = ModelOptions(model=str(tmp_path / "no-model"))
    app = create_app(ServeConfig(runs[0], device="cpu", model_options=no_model))
    with TestClient(app) as c:
        r = c.post("/api/inspect", json={"text": "the fox"})
        assert r.status_code == 503 and "could not load the model" in r.json()["error"]
        assert c.get("/api/features/2").status_code == 200


def test_serve_config_and_cli(tmp_path):
    from monosemantic.errors import UserError

    ns = build_parser("serve").parse_args(["serve", "RUN", "--port", "8123"])
    cfg = dataclass_from_namespace(ServeConfig, ns)
    assert cfg.host == "127.0.0.1" and cfg.port == 8123 and str(cfg.run) == "RUN"
    with pytest.raises(UserError, match="port"):
        ServeConfig(tmp_path, port=70000)
    with pytest.raises(UserError, match="analyze"):
        create_app(ServeConfig(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        create_app(ServeConfig(tmp_path / "nowhere"))


def test_the_runs_sae_folder_serves_the_run(runs, tmp_path):
    """`serve RUN/sae` is `serve RUN`: the pages and the model side both open RUN."""
    from monosemantic.runs import RunDir

    app = create_app(ServeConfig(runs[0] / "sae", device="cpu"))
    assert app.state.data.run == RunDir(runs[0])
    assert app.state.backend.run == RunDir(runs[0])
    with TestClient(app) as c:
        assert c.get("/inspect").status_code == 200
        r = c.post("/api/inspect", json={"text": "the golden gate bridge", "top": 3})
        assert r.status_code == 200, r.text


def test_an_older_nested_demo_folder_gets_a_clear_error(runs, tmp_path):
    import shutil

    from monosemantic.errors import UserError

    shutil.copytree(runs[0], tmp_path / "demo" / "sae")  # the run was OUT/sae, its SAE OUT/sae/sae
    (tmp_path / "demo" / "demo_cfg.json").write_text("{}")
    with pytest.raises(UserError, match=r"older monosemantic.*serve .*demo/sae"):
        create_app(ServeConfig(tmp_path / "demo"))
    app = create_app(ServeConfig(tmp_path / "demo" / "sae"))  # its run, as the error says
    assert app.state.data.run.path == tmp_path / "demo" / "sae"
