"""
What a Hugging Face CPU Space of your model costs and does: the folder size with and without int8 weights, then
the folder's entry command (its Dockerfile CMD and ENV, from the folder itself, as the container starts it) timed
from launch to the first streamed token, decode tokens/s of one chat, and the server's memory at rest and while
4 chats stream at once. Uses the most trained checkpoint under NANOCHAT_BASE_DIR (or --source/--model-tag).

    flock /tmp/bench.lock python -m dev.bench_space                     # both folders, the int8 one served
    flock /tmp/bench.lock python -m dev.bench_space --serve fp32 --extra "--threads 2 --num-workers 1"

A Space has 2 vCPUs: run it on 2 cores. One JSON line per measurement goes to stdout.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import psutil

from scripts import make_space

URL = f"http://127.0.0.1:{make_space.PORT}"


def emit(**row):
    print(json.dumps(row), flush=True)


def entry_command(folder: str) -> tuple[list[str], dict]:
    """The Dockerfile's CMD and ENV, with the image's paths mapped onto this machine (folder, this venv)."""
    steps, image_env = make_space.read_dockerfile(folder)
    env = dict(os.environ)
    env.update({k: v.replace(make_space.APP_DIR, folder) for k, v in image_env.items() if k not in ("HOME", "PATH")})
    cmd = json.loads(dict(steps)["CMD"])
    return [sys.executable, *cmd[1:]], env


def stream_chat(content: str, max_tokens: int, first_token: list | None = None) -> tuple[int, float]:
    """One streamed OpenAI chat; -> (tokens, seconds from the first token to the last)."""
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0.8, "stream": True, "stream_options": {"include_usage": True}}
    t_first, tokens = None, 0
    with httpx.stream("POST", URL + "/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content") and t_first is None:
                t_first = time.time()
                if first_token is not None:
                    first_token.append(t_first)
    return tokens, time.time() - (t_first or time.time())


def serve_and_measure(folder: str, extra: list[str], label: str, chats: int, max_tokens: int):
    cmd, env = entry_command(folder)
    cmd += extra
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}: {' '.join(cmd)}")
            try:
                httpx.get(URL + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        first = []
        stream_chat("Hello! Who are you?", 16, first)
        emit(what="cold_start_to_first_token_s", folder=label, value=round(first[0] - t0, 2), command=" ".join(extra))
        server = psutil.Process(proc.pid)
        emit(what="rss_at_rest_mb", folder=label, value=round(server.memory_info().rss / 1e6, 1))

        rates = []
        for _ in range(3):
            tokens, seconds = stream_chat("Tell me a story about a cat.", max_tokens)
            rates.append(tokens / seconds if seconds > 0 else 0.0)
        emit(what="decode_tok_per_s_one_chat", folder=label, value=round(statistics.median(rates), 1),
             runs=[round(r, 1) for r in rates], command=" ".join(extra))

        peak, done = [server.memory_info().rss], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(server.memory_info().rss)
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        results = []
        threads = [threading.Thread(target=lambda: results.append(stream_chat("Tell me about the sea.", max_tokens)))
                   for _ in range(chats)]
        t1 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        emit(what=f"rss_peak_{chats}_chats_mb", folder=label, value=round(max(peak) / 1e6, 1))
        emit(what=f"aggregate_tok_per_s_{chats}_chats", folder=label,
             value=round(sum(n for n, _ in results) / (time.time() - t1), 1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=None)
    p.add_argument("--model-tag", default=None)
    p.add_argument("--serve", choices=["int8", "fp32", "both"], default="int8", help="which folder to serve")
    p.add_argument("--extra", default="", help="flags appended to the entry command, e.g. '--threads 2'")
    p.add_argument("--chats", type=int, default=4, help="concurrent chats for the memory peak")
    p.add_argument("--max-tokens", type=int, default=128)
    args = p.parse_args()
    where = tempfile.mkdtemp(prefix="bench-space-")
    pick = (["--source", args.source] if args.source else []) + (["--model-tag", args.model_tag] if args.model_tag
                                                                  else [])
    folders = {}
    for label, flags in (("fp32", []), ("int8", ["--int8"])):
        wheel = [] if not folders else ["--wheel", next(iter(folders.values()))["wheel"]]
        out = make_space.main(["--out", os.path.join(where, label), *pick, *flags, *wheel])
        whl = [f for f in os.listdir(os.path.join(out, "wheels")) if f.startswith("nanochat_cpu")][0]
        folders[label] = {"path": out, "wheel": os.path.join(out, "wheels", whl)}
        emit(what="folder_mb", folder=label, value=round(make_space.folder_size(out) / 1e6, 1),
             model_mb=round(make_space.folder_size(os.path.join(out, "model")) / 1e6, 1))
    for label in (["fp32", "int8"] if args.serve == "both" else [args.serve]):
        serve_and_measure(folders[label]["path"], shlex.split(args.extra), label, args.chats, args.max_tokens)


if __name__ == "__main__":
    main()
