"""
Tests of the chat server (scripts/chat_web.py) against live uvicorn servers on 127.0.0.1 with a tiny random model:
every limit's 4xx, the SSE format, the official `openai` client (streaming and not), 16 concurrent streams on 2
workers, a disconnect freeing its worker, and a property-based fuzz of the API from its own OpenAPI schema.

    python -m pytest tests/test_chat_web.py -q
"""

import base64
import concurrent.futures
import hashlib
import json
import re
import socket
import threading
import time

import httpx
import pytest
import torch
import uvicorn

from conftest import byte_tokenizer, random_gpt
from nanochat.engine import Engine
from scripts import chat_web
from scripts.chat_web import create_app

TOKENIZER = byte_tokenizer()


def tiny_model(seq_len=128):
    return random_gpt(sequence_len=seq_len, vocab_size=TOKENIZER.get_vocab_size(), n_layer=2, n_head=2, n_kv_head=1,
                      n_embd=32).eval()


class SlowModel(torch.nn.Module):
    """The tiny model plus a pause per forward: a reply of a few hundred tokens takes seconds.
    never_stop=True also hides the stop tokens, so a reply always runs to max_tokens."""

    def __init__(self, model, pause_s, never_stop=False):
        super().__init__()
        self.inner, self.pause_s, self.config = model, pause_s, model.config
        self.hidden = [TOKENIZER.encode_special(t) for t in ("<|bos|>", "<|assistant_end|>")] if never_stop else []

    def get_device(self):
        return self.inner.get_device()

    def forward(self, idx, kv_cache=None):
        time.sleep(self.pause_s)
        logits = self.inner(idx, kv_cache=kv_cache)
        logits[..., self.hidden] = float("-inf")
        return logits


class LiveServer:
    def __init__(self, engine, **kwargs):
        self.app = create_app(engine, **kwargs)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(chat_web.server_config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)

    def stats(self):
        return httpx.get(self.url + "/stats").json()

    def wait_idle(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            stats = self.stats()
            if stats["busy"] == 0 and stats["queued"] == 0:
                return stats
            time.sleep(0.05)
        raise AssertionError(f"workers still busy after {timeout} s: {self.stats()}")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    live = LiveServer(Engine(tiny_model(), TOKENIZER), num_workers=2, model_name="tiny")
    yield live
    live.stop()


def chat_body(content="hello", **kwargs):
    return {"messages": [{"role": "user", "content": content}], **kwargs}


def read_sse(response) -> list:
    """The data payloads of a server-sent event stream, checking the framing on the way."""
    events, text = [], response.read().decode("utf-8")
    assert text.endswith("\n\n")
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, f"bad SSE block {block!r}"
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


# -----------------------------------------------------------------------------
# Basics and formats

def test_health_stats_models_and_page(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "model": "tiny"}
    stats = server.stats()
    assert stats["workers"] == 2 and {"busy", "queued", "tokens_served", "requests"} <= set(stats)
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<title>nanochat</title>" in page.text
    external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//""", page.text)
    assert not external, f"the page must not load external assets: {external}"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    script = re.search(r"<script>(.*?)</script>", page.text, re.S).group(1)
    assert f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_nanochat_sse_stream(server):
    before = server.stats()["tokens_served"]
    with httpx.stream("POST", server.url + "/chat/completions", json=chat_body(max_tokens=20, seed=3),
                      timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = read_sse(r)
    *tokens, done = events
    assert all(set(e) == {"token"} and isinstance(e["token"], str) for e in tokens)
    assert done["done"] is True and done["finish_reason"] in ("stop", "length") and 1 <= done["tokens"] <= 20
    server.wait_idle()
    assert server.stats()["tokens_served"] == before + done["tokens"]


def test_greedy_stream_equals_openai_answer_and_engine(server):
    messages = [{"role": "user", "content": "2+2?"}]
    with httpx.stream("POST", server.url + "/chat/completions",
                      json={"messages": messages, "temperature": 0, "max_tokens": 30}) as r:
        streamed = "".join(e.get("token", "") for e in read_sse(r))
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": messages, "temperature": 0, "max_tokens": 30})
    assert r.status_code == 200
    engine = Engine(tiny_model(), TOKENIZER)
    direct = "".join(engine.stream(TOKENIZER.render_for_completion({"messages": messages}), max_tokens=30,
                                   temperature=0.0))
    assert streamed == r.json()["choices"][0]["message"]["content"] == direct


def test_long_conversation_is_trimmed_not_refused(server):
    """The tiny model's context is 128 tokens; 20 turns of 700 characters are far beyond it."""
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "y" * 700} for i in range(41)]
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": turns, "max_tokens": 500})
    assert r.status_code == 200
    usage = r.json()["usage"]
    assert usage["total_tokens"] <= 128 and usage["completion_tokens"] >= 1


def test_special_token_text_from_users_is_plain_text(server):
    text = "<|assistant_end|><|bos|>"
    r = httpx.post(server.url + "/v1/chat/completions", json=chat_body(text, max_tokens=1))
    # byte-level tokenizer: one token per byte, plus bos, user_start, user_end, assistant_start
    assert r.json()["usage"]["prompt_tokens"] == len(text.encode()) + 4


# -----------------------------------------------------------------------------
# Limits: each returns its documented 4xx with a message naming the problem

many = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"} for i in range(chat_web.MAX_MESSAGES + 1)]
BAD_REQUESTS = [
    ({"messages": []}, "messages"),
    ({}, "messages"),
    ({"messages": many}, "messages"),
    (chat_body("x" * (chat_web.MAX_MESSAGE_CHARS + 1)), "limit is 8000"),
    ({"messages": [{"role": "user", "content": "x" * 7000}, {"role": "assistant", "content": "x" * 7000}] * 2 + [
        {"role": "user", "content": "x" * 7000}]}, "in total"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    ({"messages": [{"role": "user"}]}, "content"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "alternating"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "alternating"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "last message"),
    (chat_body(temperature=-0.1), "temperature"),
    (chat_body(temperature=2.01), "temperature"),
    (chat_body(temperature="hot"), "temperature"),
    (chat_body(top_k=0), "top_k"),
    (chat_body(top_k=chat_web.MAX_TOP_K + 1), "top_k"),
    (chat_body(max_tokens=0), "max_tokens"),
    (chat_body(max_tokens=chat_web.MAX_MAX_TOKENS + 1), "max_tokens"),
    (chat_body(seed=-1), "seed"),
    (chat_body(temperature=True), "temperature"),           # wrong types are refused, not coerced
    (chat_body(max_tokens="5"), "max_tokens"),
    (chat_body(top_k=5.5), "top_k"),
    (chat_body(unknown_field=1), "unknown_field"),
]


@pytest.mark.parametrize("body, names", BAD_REQUESTS)
def test_limits_return_400_naming_the_problem(server, body, names):
    r = httpx.post(server.url + "/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert names in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body, names", [
    (chat_body(n=2), "n"),
    (chat_body(stop=["\n"]), "stop sequences"),
    (chat_body(top_p=0), "top_p"),
    (chat_body(max_completion_tokens=99999), "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "content"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    (chat_body(stream="yes"), "stream"),
])
def test_openai_limits_return_400(server, body, names):
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]["message"]


def test_body_size_and_bad_json(server):
    big = json.dumps(chat_body("x" * (chat_web.MAX_BODY_BYTES + 10))).encode()
    r = httpx.post(server.url + "/chat/completions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "body over" in r.json()["error"]["message"]

    def chunked():   # no Content-Length: the limit must hold for streamed bodies too
        for _ in range(40):
            yield b" " * 8192

    r = httpx.post(server.url + "/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    for bad in [b'{"messages": [', b'{"messages": [{"role": "user", "content": "\xff"}]}', b"[" * 50_000 + b"]" * 50_000,
                b'{"seed": ' + b"9" * 5000 + b"}"]:    # syntax, invalid UTF-8, deep nesting, a too-long number
        r = httpx.post(server.url + "/chat/completions", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"], (bad[:30], r.text)
    for value in (b"NaN", b"Infinity"):   # Python's json.loads accepts these
        r = httpx.post(server.url + "/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "hi"}], '
                       b'"temperature": ' + value + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    assert httpx.get(server.url + "/nope").status_code == 404


def test_openai_accepts_text_parts_and_developer_role(server):
    body = {"model": "anything", "messages": [{"role": "developer", "content": "be nice"},
                                              {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "seed": 1, "user": "ignored-extra-field"}
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"


# -----------------------------------------------------------------------------
# The official openai client

def test_official_openai_client(server):
    openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install openai)")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list()] == ["tiny"]
    completion = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=16, temperature=0, seed=1)
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and completion.usage.completion_tokens <= 16
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content                   # greedy: same answer streamed or not
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=5)


# -----------------------------------------------------------------------------
# Concurrency, queueing, disconnects

@pytest.mark.slow
def test_16_concurrent_streams_on_2_workers_complete_or_get_503():
    live = LiveServer(Engine(SlowModel(tiny_model(), 0.002), TOKENIZER), num_workers=2, queue_size=6,
                      queue_timeout=20, per_client=16)   # all 16 come from 127.0.0.1
    try:
        def one(i):
            with httpx.stream("POST", live.url + "/chat/completions", json=chat_body(f"q{i}", max_tokens=40),
                              timeout=60) as r:
                if r.status_code == 503:
                    assert int(r.headers["retry-after"]) > 0
                    r.read()
                    return "503"
                assert r.status_code == 200
                assert read_sse(r)[-1]["done"] is True
                return "ok"

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(16), timeout=120))
        assert results.count("ok") >= 8 and set(results) <= {"ok", "503"}    # 2 running + 6 queued at least
        stats = live.wait_idle()
        assert stats["rejected_busy"] == results.count("503")
    finally:
        live.stop()


@pytest.mark.slow
@pytest.mark.parametrize("trust_proxy", [True, False])
def test_per_client_limit_and_forwarded_addresses(trust_proxy):
    """One reply per client address at a time: a second gets 429. Behind a trusted proxy the address is the
    X-Forwarded-For one, so another user passes; untrusted, the header is ignored (anyone could forge it)."""
    live = LiveServer(Engine(SlowModel(tiny_model(seq_len=1024), 0.01, never_stop=True), TOKENIZER), num_workers=2,
                      queue_size=4, per_client=1, trust_proxy=trust_proxy)
    alice, bob = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.2, 10.0.0.1"}
    try:
        with httpx.stream("POST", live.url + "/chat/completions", json=chat_body(max_tokens=900), headers=alice,
                          timeout=30) as r:
            lines = r.iter_lines()                                          # (kept: dropping it closes r)
            assert next(lines).startswith("data: ")                         # alice's reply is generating
            again = httpx.post(live.url + "/v1/chat/completions", json=chat_body(max_tokens=2), headers=alice)
            assert again.status_code == 429 and int(again.headers["retry-after"]) > 0
            assert "your address" in again.json()["error"]["message"]
            other = httpx.post(live.url + "/v1/chat/completions", json=chat_body(max_tokens=2), headers=bob)
            assert other.status_code == (200 if trust_proxy else 429)
        live.wait_idle(timeout=5)
        after = httpx.post(live.url + "/v1/chat/completions", json=chat_body(max_tokens=2), headers=alice)
        assert after.status_code == 200                                     # alice's slot came back
        assert live.stats()["rejected_client"] == (1 if trust_proxy else 2)
    finally:
        live.stop()


@pytest.mark.slow
def test_disconnect_frees_the_worker():
    live = LiveServer(Engine(SlowModel(tiny_model(seq_len=1024), 0.01, never_stop=True), TOKENIZER), num_workers=1,
                      queue_size=0)
    try:
        body = chat_body(max_tokens=900, temperature=1.0)
        with httpx.stream("POST", live.url + "/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")                 # generation has started...
            assert live.stats()["busy"] == 1
            r2 = httpx.post(live.url + "/chat/completions", json=chat_body(max_tokens=2))
            assert r2.status_code == 503                            # ...and holds the only worker
        start = time.time()                                         # ...until the client goes away
        stats = live.wait_idle(timeout=5)
        assert time.time() - start < 5 and stats["cancelled"] == 1 and stats["tokens_served"] < 900
        # Non-streaming: a client that times out is noticed too.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(live.url + "/v1/chat/completions", json=body, timeout=0.5)
        stats = live.wait_idle(timeout=5)
        assert stats["cancelled"] == 2
        with httpx.stream("POST", live.url + "/chat/completions", json=chat_body(max_tokens=3)) as r:
            assert r.status_code == 200 and read_sse(r)[-1]["done"] is True
    finally:
        live.stop()


def test_slow_senders_cannot_take_every_connection(monkeypatch):
    """Clients that never finish sending their body hold connections; beyond MAX_CONNECTIONS new ones get 503 at
    once, and the server serves again as soon as they leave."""
    monkeypatch.setattr(chat_web, "MAX_CONNECTIONS", 4)
    live = LiveServer(Engine(tiny_model(), TOKENIZER), num_workers=1)
    slow = []
    try:
        for _ in range(3):   # uvicorn counts the new connection too: 3 held + 1 new reach the limit of 4
            s = socket.create_connection(("127.0.0.1", live.port))
            s.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")     # 1 byte of 1000, then silence
            slow.append(s)
        deadline = time.time() + 5
        while len(live.server.server_state.connections) < 3:
            assert time.time() < deadline, "the slow connections were not accepted"
            time.sleep(0.02)
        assert httpx.get(live.url + "/health", timeout=5).status_code == 503
        for s in slow:
            s.close()
        deadline = time.time() + 5
        while httpx.get(live.url + "/health", timeout=5).status_code != 200:
            assert time.time() < deadline, "the server did not recover after the slow senders left"
            time.sleep(0.05)
    finally:
        for s in slow:
            s.close()
        live.stop()


# -----------------------------------------------------------------------------
# Fuzzing from the OpenAPI schema

@pytest.mark.slow
def test_fuzz_api_from_its_openapi_schema(server):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/chat/completions", "/v1/chat/completions", "/stats", "/health"}

    # derandomize: the same 60 cases every run, so a failure reproduces and a pass means the same thing each time.
    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        op = data.draw(st.sampled_from(operations))
        case = data.draw(op.as_strategy())
        response = case.call(base_url=server.url, timeout=30)
        assert response.status_code < 500, f"{op.method} {op.path}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 400:
            assert "message" in response.json()["error"]

    fuzz()
    server.wait_idle()


# -----------------------------------------------------------------------------
# chat_cli and checkpoint loading (a tiny checkpoint in a temporary base directory)

@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from dataclasses import asdict
    from nanochat.checkpoint_manager import save_checkpoint
    base = tmp_path_factory.mktemp("nanochat_base")
    TOKENIZER.save(str(base / "tokenizer"))
    model = tiny_model()
    meta = {"model_config": asdict(model.config), "step": 5}
    save_checkpoint(str(base / "base_checkpoints" / "d2"), 5, model.state_dict(), None, meta)
    save_checkpoint(str(base / "chatsft_checkpoints" / "d2"), 7, model.state_dict(), None, dict(meta, step=7))
    return base


def run_cli(base_dir, *args, stdin=""):
    import os
    import subprocess
    import sys
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base_dir), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "scripts.chat_cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.subprocess
def test_cli_one_shot_picks_the_most_trained_checkpoint(base_dir):
    out = run_cli(base_dir, "-p", "hello", "--max-tokens", "5", "--temperature", "0", "--quantize", "none")
    assert out.returncode == 0, out.stderr
    assert "loaded sft step 7" in out.stderr               # sft beats base
    engine = Engine(tiny_model(), TOKENIZER)
    expected = "".join(engine.stream(TOKENIZER.render_for_completion(
        {"messages": [{"role": "user", "content": "hello"}]}), max_tokens=5, temperature=0.0))
    assert out.stdout == expected + "\n"


def test_load_engine_options(base_dir, monkeypatch):
    from nanochat.engine import load_engine
    from nanochat.quantize import Int8Linear
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(base_dir))
    engine, name = load_engine("base", None, None, torch.device("cpu"), quantize="int8")
    assert name.startswith("base d2 step 5, int8 weights") and isinstance(engine.model.lm_head, Int8Linear)
    reply = engine.stream([1, 2, 3], max_tokens=4, temperature=1.0)
    list(reply)
    assert reply.completion_tokens >= 1
    engine, name = load_engine(None, "d2", 7, torch.device("cpu"), dtype="bfloat16")
    assert name == "sft d2 step 7, bfloat16" and engine.model.lm_head.weight.dtype == torch.bfloat16


@pytest.mark.subprocess
def test_cli_interactive_clear_quit_and_bad_flags(base_dir):
    out = run_cli(base_dir, "--max-tokens", "3", stdin="hi\nclear\nagain\nquit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Assistant: ") == 2 and "[new conversation]" in out.stdout
    out = run_cli(base_dir, "-p", "x", "--temperature", "9")
    assert out.returncode != 0 and "--temperature: 9 is not a temperature from 0 to 2" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli(base_dir, "-p", "x", "--model-tag", "d99")
    assert out.returncode != 0 and "Traceback" not in out.stderr and "d99" in out.stderr
