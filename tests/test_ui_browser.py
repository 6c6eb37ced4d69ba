"""
The chat page (nanochat/ui.html) driven end to end in headless Chromium against a live server with a tiny model:
type and send, see the answer stream in, regenerate, edit a user turn, new chat, change settings, see errors.

Needs Debian's chromium (`apt-get install chromium`) and the playwright Python package (`pip install playwright`);
no browser download (never `playwright install`). Skipped, saying why, where either is missing.

    python -m pytest tests/test_ui_browser.py -q
"""

import os
import shutil
import time

import pytest

from test_chat_web import TOKENIZER, LiveServer, SlowModel, tiny_model
from nanochat.engine import Engine

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("NANOCHAT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (Debian: apt-get install chromium; or set NANOCHAT_CHROMIUM)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    # A short pause per token, so the page is seen mid-stream.
    live = LiveServer(Engine(SlowModel(tiny_model(seq_len=256), 0.01, never_stop=True), TOKENIZER), num_workers=1,
                      queue_size=0)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(server.url + "/")
    yield page
    assert all(url.startswith(server.url) for url in requests), f"the page fetched outside the server: {requests}"
    blocked = [m for m in console if "Content Security Policy" in m]
    assert not blocked, f"the page's own CSP blocked something: {blocked}"
    page.close()


def send(page, text):
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_answer_longer_than(page, n, timeout=30.0):
    """Polls from Python: page.wait_for_function would eval() in the page, which its CSP (rightly) forbids."""
    deadline = time.time() + timeout
    while len(page.text_content(".message.assistant .bubble") or "") <= n:
        assert time.time() < deadline, f"the answer did not grow beyond {n} characters"
        time.sleep(0.02)


def wait_reply_done(page, server):
    page.wait_for_selector(".streaming", state="detached", timeout=30_000)
    server.wait_idle()


def test_streamed_answer_regenerate_edit_and_new_chat(page, server):
    page.fill("#max-tokens", "40")
    page.fill("#temperature", "1.0")
    send(page, "Hello there")
    page.wait_for_selector(".message.user .bubble:text('Hello there')")
    # Streaming: the answer is on the page while the reply is still being generated.
    page.wait_for_selector(".message.assistant.streaming")
    wait_answer_longer_than(page, 0)
    partial = page.text_content(".message.assistant .bubble")
    assert page.is_disabled("#send") and page.is_enabled("#stop")
    wait_reply_done(page, server)
    first = page.text_content(".message.assistant .bubble")
    assert len(first) >= len(partial) > 0 and first.startswith(partial)
    assert page.locator(".message").count() == 2

    # Regenerate: a new answer replaces the old one (sampling with a fresh seed).
    page.click(".message.assistant .regenerate")
    wait_reply_done(page, server)
    assert page.locator(".message").count() == 2
    second = page.text_content(".message.assistant .bubble")
    assert second and second != first

    # A second turn, then edit the first user turn: everything after it is replaced by a new answer.
    send(page, "Second question")
    wait_reply_done(page, server)
    assert page.locator(".message").count() == 4
    page.click(".message.user >> nth=0 >> .edit")
    page.fill(".edit-box", "Edited question")
    page.click(".save")
    wait_reply_done(page, server)
    texts = page.locator(".message .bubble").all_text_contents()
    assert len(texts) == 2 and texts[0] == "Edited question" and texts[1]

    page.click("#new-chat")
    assert page.locator(".message").count() == 0


def test_stop_button_and_error_shown(page, server):
    page.fill("#max-tokens", "200")
    send(page, "Tell me a long story")
    wait_answer_longer_than(page, 3)
    page.click("#stop")
    page.wait_for_selector(".streaming", state="detached")
    server.wait_idle()
    assert server.stats()["cancelled"] >= 1
    assert page.locator("#error").is_hidden()

    # A setting the server refuses cannot be sent: the page clamps it; an oversized message shows the server's error.
    send(page, "x" * 9000)
    page.wait_for_selector("#error:visible")
    assert "limit is 8000" in page.text_content("#error")
    assert page.locator(".message.assistant").count() == 1      # the failed reply left no empty answer
