"""HTTP backends against a loopback server speaking the OpenAI and Anthropic APIs: answers,
usage and cost, retries (429 + Retry-After, 500, timeouts, malformed bodies), wrong keys,
unreachable servers, the call cache and strict JSON parsing with a retry."""

import socket

import pytest

from helpers.fake_llm import FakeLLMServer, Fault
from monosemantic.interp.backends import LLMOptions, make_backend
from monosemantic.interp.backends.base import BackendError
from monosemantic.interp.backends.http import HTTPOptions, retry_after_seconds
from monosemantic.interp.backends.openai import chat_url
from monosemantic.interp.cache import CallCache, LLMClient
from monosemantic.interp.structured import (
    ParseError,
    StructuredError,
    complete_json,
    parse_json,
)

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def echo(messages):
    return "echo: " + messages[-1]["content"]


def backend(kind, url, monkeypatch, **kw):
    monkeypatch.setenv("FAKE_KEY", "test-key")
    opts = LLMOptions(llm=kind, model=kw.pop("model", "m-1"), base_url=url,
                      api_key_env="FAKE_KEY", max_retries=kw.pop("max_retries", 3),
                      timeout=kw.pop("timeout", 5.0), **kw)
    b = make_backend(opts)
    b.http = HTTPOptions(timeout=opts.timeout, max_retries=opts.max_retries, backoff=0.01)
    b.delays = []
    b.sleep = b.delays.append
    return b


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_answer_usage_and_cost(kind, monkeypatch):
    with FakeLLMServer(echo) as srv:
        b = backend(kind, srv.url + ("/v1" if kind == "openai" else ""), monkeypatch,
                    price_in=1.0, price_out=2.0)
        done = b.complete(MSGS, max_tokens=20, temperature=0.0)
    assert done.text == "echo: hello there"
    assert (done.input_tokens, done.output_tokens) == (4, 3)
    assert done.cost_usd == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)
    req = srv.requests[0]
    if kind == "anthropic":
        assert req["path"] == "/v1/messages"
        assert req["headers"]["x-api-key"] == "test-key" and req["headers"]["anthropic-version"]
        assert req["body"]["system"] == "be brief"
        assert [m["role"] for m in req["body"]["messages"]] == ["user"]
    else:
        assert req["path"] == "/v1/chat/completions"
        assert req["body"]["messages"] == MSGS and req["body"]["max_tokens"] == 20


def test_unknown_price_is_unknown_not_zero(monkeypatch):
    with FakeLLMServer(echo) as srv:
        b = backend("openai", srv.url, monkeypatch, model="some-local-model")
        client = LLMClient(b)
        done = client.complete(MSGS, max_tokens=5)
    assert done.cost_usd is None and client.usage.cost_usd is None
    assert "unknown" in client.usage.summary()


def test_known_model_price_from_table(monkeypatch):
    with FakeLLMServer(echo) as srv:
        b = backend("anthropic", srv.url, monkeypatch, model="claude-3-5-haiku-20241022")
        done = b.complete(MSGS, max_tokens=5, temperature=0.0)
    assert done.cost_usd == pytest.approx((4 * 0.80 + 3 * 4.00) / 1e6)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_retries_429_with_retry_after_then_500_then_malformed(kind, monkeypatch):
    with FakeLLMServer(echo) as srv:
        srv.faults = [Fault(429, {"retry-after": "7"}), Fault(500),
                      Fault(200, body=b"not json at all"), Fault(200, body=b'{"choices": []}')]
        b = backend(kind, srv.url, monkeypatch, max_retries=5)
        done = b.complete(MSGS, max_tokens=5, temperature=0.0)
    assert done.text == "echo: hello there"
    assert len(srv.requests) == 5
    assert b.delays[0] == 7.0  # Retry-After honoured
    # Exponential backoff with jitter in [0.5, 1] x 0.01 x 2^attempt.
    for attempt, delay in enumerate(b.delays[1:], start=1):
        assert 0.005 * 2 ** attempt <= delay <= 0.01 * 2 ** attempt


def test_timeout_is_retried(monkeypatch):
    with FakeLLMServer(echo) as srv:
        srv.faults = [Fault(delay=1.0)]
        b = backend("openai", srv.url, monkeypatch, timeout=0.2)
        done = b.complete(MSGS, max_tokens=5, temperature=0.0)
    assert done.text.startswith("echo") and len(srv.requests) == 2 and len(b.delays) == 1


def test_gives_up_after_max_retries(monkeypatch):
    with FakeLLMServer(echo) as srv:
        srv.faults = [Fault(503)] * 10
        b = backend("openai", srv.url, monkeypatch, max_retries=2)
        with pytest.raises(BackendError, match="giving up after 3 attempts: HTTP 503"):
            b.complete(MSGS, max_tokens=5, temperature=0.0)
    assert len(srv.requests) == 3


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_wrong_key_is_a_clear_error_without_the_key(kind, monkeypatch):
    with FakeLLMServer(echo, key="the-right-key") as srv:
        b = backend(kind, srv.url, monkeypatch)
        with pytest.raises(BackendError) as err:
            b.complete(MSGS, max_tokens=5, temperature=0.0)
    assert "401" in str(err.value) and "$FAKE_KEY" in str(err.value)
    assert "test-key" not in str(err.value)
    assert len(srv.requests) == 1  # a wrong key is not retried


def test_missing_key_for_anthropic(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY"):
        make_backend(LLMOptions(llm="anthropic"))


def test_unreachable_server(monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    b = backend("openai", f"http://127.0.0.1:{port}/v1", monkeypatch, max_retries=1)
    with pytest.raises(BackendError, match="cannot reach"):
        b.complete(MSGS, max_tokens=5, temperature=0.0)


def test_cache_second_run_makes_no_http_call(monkeypatch, tmp_path):
    with FakeLLMServer(echo) as srv:
        b = backend("openai", srv.url, monkeypatch, price_in=1.0, price_out=1.0)
        first = LLMClient(b, CallCache(tmp_path / "cache.sqlite"))
        a = first.complete(MSGS, max_tokens=5)
        first.complete(MSGS, max_tokens=6)  # other sampling parameters: another entry
        assert len(srv.requests) == 2
        second = LLMClient(b, CallCache(tmp_path / "cache.sqlite"))
        again = second.complete(MSGS, max_tokens=5)
        assert len(srv.requests) == 2
    assert again.text == a.text and again.cached
    assert second.usage.calls == 0 and second.usage.cached_calls == 1
    assert second.usage.cost_usd == 0.0
    assert first.usage.calls == 2 and first.usage.cost_usd == pytest.approx(2 * 7 / 1e6)
    # The key is not stored anywhere in the cache.
    assert b"test-key" not in (tmp_path / "cache.sqlite").read_bytes()


def test_parse_json_is_strict():
    assert parse_json(' {"a": 1}\n') == {"a": 1}
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    for bad in ['Sure! {"a": 1}', '{"a": 1} and more', "{'a': 1}", ""]:
        with pytest.raises(ParseError):
            parse_json(bad)


def test_structured_retry_shows_the_error(monkeypatch):
    answers = iter(["Here you go: label", '{"label": 3}', '{"label": "x"}'])
    with FakeLLMServer(lambda m: next(answers)) as srv:
        client = LLMClient(backend("openai", srv.url, monkeypatch))

        def validate(obj):
            if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
                raise ParseError("field 'label' must be a string")
            return obj["label"]

        got = complete_json(client, MSGS, validate, max_tokens=10, retries=2)
    assert got.value == "x" and got.attempts == 3 and len(srv.requests) == 3
    last = srv.requests[2]["body"]["messages"]
    assert last[-2] == {"role": "assistant", "content": '{"label": 3}'}
    assert "label" in last[-1]["content"] and "JSON" in last[-1]["content"]
    assert srv.requests[0]["body"]["response_format"] == {"type": "json_object"}


def test_structured_gives_up(monkeypatch):
    with FakeLLMServer(lambda m: "no json") as srv:
        client = LLMClient(backend("openai", srv.url, monkeypatch))
        with pytest.raises(StructuredError, match="2 attempts"):
            complete_json(client, MSGS, lambda o: o, max_tokens=10, retries=1)


def test_retry_after_formats():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9


def test_chat_url_accepts_base_with_or_without_v1():
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


def test_openai_needs_a_model_name():
    with pytest.raises(Exception, match="--model"):
        make_backend(LLMOptions(llm="openai", base_url="http://127.0.0.1:9"))



def test_json_mode_can_be_turned_off(monkeypatch):
    with FakeLLMServer(lambda m: '{"a": 1}') as srv:
        b = backend("openai", srv.url, monkeypatch, json_mode=False)
        b.complete(MSGS, max_tokens=5, temperature=0.0, response_format="json")
    assert "response_format" not in srv.requests[0]["body"]
