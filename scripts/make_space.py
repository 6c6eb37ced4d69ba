"""
Package a trained model as a Hugging Face Docker Space: a folder that, pushed to a new Space, serves the chat page
and the OpenAI-compatible API on a free CPU Space (2 vCPU, 16 GB RAM, port 7860). Nothing is fetched when the
container starts: the model, the tokenizer and the code are all in the image.

    python -m scripts.make_space --out space                  # the most trained checkpoint (rl > sft > mid > base)
    python -m scripts.make_space --out space --int8           # int8 Linear weights: a smaller folder
    python -m scripts.make_space --out my-space-clone --source sft --model-tag d4 --title "My CPU chatbot"

What it writes into --out (other files there, such as a Space's .git, are left alone, so the same command updates
a clone of the Space):
    README.md     the Space's metadata (sdk: docker, app_port: 7860) and a model card from the checkpoint and report
    Dockerfile    python slim, the CPU build of torch, then wheels/ installed offline, as uid 1000
    wheels/       this project's wheel (the rustbpe extension compiled here, so the image needs no Rust) and the
                  wheels the server needs (tiktoken, fastapi, uvicorn and theirs), at the versions installed here
    model/        the Space's NANOCHAT_BASE_DIR: tokenizer/ and <stage dir>/<tag>/ with one checkpoint
    .gitattributes  (only if absent) stores *.pt, *.pkl and *.whl with Git LFS, as the Hub wants for binaries
Run it on Linux x86_64, the Space's platform (the wheels are built and fetched for this machine). README.md
("A Hugging Face Space") says how to create the Space, push the folder and update the model.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

from nanochat import cli
from nanochat.checkpoint_manager import (STAGE_DIRS, build_model_from, load_checkpoint, locate_checkpoint,
                                         save_checkpoint)
from nanochat.common import UserError, get_base_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 7860
APP_DIR = "/app"                           # the image's WORKDIR: code and model, read-only for the server
SERVING_PACKAGES = ["tiktoken", "fastapi", "uvicorn"]   # what scripts.chat_web imports beyond torch and this project
STAGE_NAMES = {"base": "pretrained only", "mid": "mid-trained", "sft": "supervised fine-tuned (SFT)",
               "rl": "SFT, then reinforcement learning (RL)"}
META_KEPT = ("step", "model_config", "val_bpb", "tokens_seen", "dtype")   # the rest (loader state...) is training's


def parse_args(argv=None):
    p = cli.parser("Package a checkpoint as a Hugging Face Docker Space (a folder to push)", __doc__)
    p.add_argument("--out", required=True, help="folder to write (created; an existing Space clone is updated)")
    cli.add_checkpoint_args(p)
    p.add_argument("--int8", action="store_true",
                   help="store the weights as int8 with one scale per row (smaller; the server dequantizes them)")
    p.add_argument("--title", default=None, help="the Space's title (default: nanochat-cpu <stage> d<depth>)")
    p.add_argument("--wheel", default=None,
                   help="this project's wheel, already built (default: build it now with maturin, ~1-2 minutes)")
    p.add_argument("--num-workers", type=cli.positive_int, default=2,
                   help="replies the Space generates at the same time (one per vCPU on the free tier)")
    return p.parse_args(argv)


# -----------------------------------------------------------------------------
# The pieces of the folder

def copy_model(source, model_tag, step, int8: bool, model_dir: str) -> dict:
    """Copy one checkpoint (optionally as int8) and the tokenizer into model_dir; -> facts for the model card."""
    from nanochat.quantize import int8_state_dict
    source, checkpoint_dir, step = locate_checkpoint(source, model_tag, step)
    model_data, _, meta = load_checkpoint(checkpoint_dir, step, "cpu")
    model = build_model_from(model_data, meta, "cpu", checkpoint_dir)
    params = sum(p.numel() for p in model.parameters())
    shipped = {k: meta[k] for k in META_KEPT if k in meta}
    model_data = model.state_dict()
    if int8:
        model_data, shipped["weights"] = int8_state_dict(model), "int8"
    tag = os.path.basename(checkpoint_dir)
    save_checkpoint(os.path.join(model_dir, STAGE_DIRS[source], tag), step, model_data, None, shipped)
    tokenizer_dir = os.path.join(get_base_dir(), "tokenizer")
    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.pkl")):
        raise UserError(f"no tokenizer in {tokenizer_dir}: the checkpoint cannot be served without the tokenizer "
                        "it was trained with")
    shutil.copytree(tokenizer_dir, os.path.join(model_dir, "tokenizer"))
    return {"source": source, "tag": tag, "step": step, "params": params, "config": meta["model_config"],
            "checkpoint_dir": checkpoint_dir, "base_tokens": pretraining_tokens(tag)}


def pretraining_tokens(tag: str) -> int | None:
    """Tokens the base model of this tag was pretrained on (its latest base checkpoint's meta), if it is here."""
    metas = sorted(glob.glob(os.path.join(get_base_dir(), STAGE_DIRS["base"], tag, "meta_*.json")))
    if not metas:
        return None
    with open(metas[-1]) as f:
        return json.load(f).get("tokens_seen")


def build_wheels(wheel: str | None, wheels_dir: str) -> tuple[str, list[str]]:
    """This project's wheel plus the serving dependencies' wheels into wheels_dir; -> (project wheel file name,
    pinned requirements of the serving packages)."""
    os.makedirs(wheels_dir)
    if wheel is None:
        if not os.path.exists(os.path.join(REPO, "rustbpe", "Cargo.toml")):
            raise UserError(f"no source tree at {REPO} to build the wheel from: pass --wheel with a built one")
        print("building this project's wheel (maturin, release mode: a minute or two)...")
        with tempfile.TemporaryDirectory() as tmp:
            run([sys.executable, "-m", "maturin", "build", "--release", "--quiet", "--interpreter", sys.executable,
                 "--out", tmp], cwd=REPO, what="maturin build")
            built = glob.glob(os.path.join(tmp, "*.whl"))
            shutil.copy(built[0], wheels_dir)
            name = os.path.basename(built[0])
    else:
        if not os.path.isfile(wheel) or not wheel.endswith(".whl"):
            raise UserError(f"--wheel {wheel}: not a wheel file")
        shutil.copy(wheel, wheels_dir)
        name = os.path.basename(wheel)
    pins = [f"{name_}=={metadata.version(name_)}" for name_ in SERVING_PACKAGES]
    print(f"fetching the serving dependencies' wheels from PyPI: {' '.join(pins)}")
    run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", wheels_dir, *pins],
        what="pip download")
    return name, pins


def run(cmd: list[str], what: str, cwd: str | None = None):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{what} failed (exit {done.returncode}):\n{(done.stderr or done.stdout).strip()[-2000:]}")


def dockerfile(wheel_name: str, pins: list[str], num_workers: int) -> str:
    import torch
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    torch_version = torch.__version__.split("+")[0]
    entry = ["python", "-m", "scripts.chat_web", "--host", "0.0.0.0", "--port", str(PORT), "--trust-proxy",
             "--num-workers", str(num_workers), "--no-compile"]
    return f"""\
# A Hugging Face Docker Space serving a nanochat-cpu model; written by `python -m scripts.make_space`.
FROM python:{py}-slim
# Spaces run the container as uid 1000. HOME is the only place the server writes to (torch's caches); the app
# folder below stays root-owned and read-only.
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/venv/bin:$PATH PYTHONUNBUFFERED=1 NANOCHAT_BASE_DIR={APP_DIR}/model
WORKDIR {APP_DIR}
# The CPU build of torch (the default PyPI wheel brings GBs of CUDA libraries).
RUN python -m venv /home/user/venv && pip install --no-cache-dir torch=={torch_version} --index-url https://download.pytorch.org/whl/cpu
COPY wheels/ wheels/
# Offline from wheels/: this project without its training dependencies, then what the server needs.
RUN pip install --no-cache-dir --no-index --find-links wheels --no-deps wheels/{wheel_name} && pip install --no-cache-dir --no-index --find-links wheels {' '.join(pins)}
COPY model/ model/
EXPOSE {PORT}
# No torch.compile warm-up: the slim image has no C++ compiler, and eager decoding answers at once.
CMD {json.dumps(entry)}
"""


def read_dockerfile(folder: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The folder's Dockerfile as (instruction, arguments) steps, comments dropped, and its ENV values as written
    (image paths, $PATH unexpanded): what the tests and dev/bench_space.py start the entry command with."""
    import shlex
    with open(os.path.join(folder, "Dockerfile")) as f:
        steps = [tuple(ln.split(" ", 1)) for ln in f.read().splitlines() if ln.strip() and not ln.startswith("#")]
    env = dict(item.split("=", 1) for ins, args in steps if ins == "ENV" for item in shlex.split(args))
    return steps, env


def readme(facts: dict, title: str | None, int8: bool) -> str:
    """The Space card: metadata block for the Hub, then what the model is and how it was made."""
    from nanochat import report
    config = facts["config"]
    title = title or f"nanochat-cpu {facts['source']} d{config['n_layer']}"
    records = report.load_records() if os.path.isdir(os.path.join(report.report_dir(), "records")) else {}
    lines = ["---", f"title: {json.dumps(title)}", "emoji: 💬", "colorFrom: blue", "colorTo: gray", "sdk: docker",
             f"app_port: {PORT}", "pinned: false",
             "short_description: A tiny chat model trained on a CPU with nanochat-cpu", "---", "",
             f"# {title}", "",
             "A tiny GPT trained from scratch on a CPU with nanochat-cpu, a CPU-first port of "
             "[nanochat](https://github.com/karpathy/nanochat). It is a toy: it makes mistakes and invents facts. "
             "Chat with it on this page, or through the OpenAI-compatible API at `/v1/chat/completions`.", "",
             "| | |", "|---|---|",
             f"| stage | {facts['source']}: {STAGE_NAMES[facts['source']]}, step {facts['step']} |",
             f"| depth | {config['n_layer']} layers, width {config['n_embd']}, {config['n_head']} heads "
             f"({config['n_kv_head']} key/value), context {config['sequence_len']} tokens |",
             f"| parameters | {facts['params']:,} |",
             f"| vocabulary | {config['vocab_size']:,} tokens (BPE trained with rustbpe) |"]
    if facts["base_tokens"]:
        lines.append(f"| pretraining tokens | {facts['base_tokens']:,} |")
    lines.append(f"| weights | {'int8, one scale per row' if int8 else 'fp32'} |")
    numbers = key_numbers(records, facts["source"])
    if numbers:
        lines += ["", "From the training run's report:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in numbers]
    lines += data_card(records)
    lines += ["", "How it was made: `bash train_cpu.sh --full` (tokenizer, pretraining, mid-training, SFT, RL on 2 CPU "
              "cores), then `python -m scripts.make_space`. Packaged on "
              f"{datetime.date.today().isoformat()}.", ""]
    return "\n".join(lines)


def data_card(records: dict) -> list[str]:
    """The model card's data section: the pretraining sources with their licenses (the mix the report's data
    stage recorded), and what the chat stages trained on."""
    from nanochat.offline_text import OFFLINE_SOURCES, mix_weights
    settings = records.get("data", {}).get("settings", {})
    lines = ["", "## Training data", ""]
    if settings.get("source") == "offline":
        weights = mix_weights(settings.get("mix") or "default")
        lines += [f"Pretraining: text from registry packages (offline mix `{settings.get('mix') or 'default'}`):", ""]
        lines += [f"- {s.name} ({s.registry} `{s.package}`{' ' + s.version if s.version else ''}): {s.license}"
                  for s in OFFLINE_SOURCES if weights.get(s.name, 0) > 0]
    elif settings.get("source") == "hub":
        lines.append("Pretraining: FineWeb-EDU (`karpathy/fineweb-edu-100b-shuffle`), ODC-By 1.0.")
    else:
        lines.append("Pretraining: the text given to base_train with --data (not recorded in the report).")
    lines += ["", "Chat stages: questions and answers built from the Wikipedia lead sections (CC BY-SA 4.0) and the "
              "country facts above, BBC News stories (released for research), conversations (SmolTalk, Apache-2.0, or "
              "offline chitchat-dataset, MIT), ARC and MMLU (training or validation splits; never the test "
              "splits that are scored), and generated spelling, arithmetic and identity conversations."]
    return lines


def key_numbers(records: dict, source: str) -> list[tuple[str, str]]:
    """(metric, formatted value) pairs from the report records that describe this model."""
    def fmt(v):
        return f"{v['value']:.4f} ± {v['stderr']:.4f}" if isinstance(v, dict) else f"{v:.4f}"
    out = []
    base = records.get("base_train", {}).get("metrics", {})
    if isinstance(base.get("val_bpb"), (int, float)):
        out.append(("pretraining val bits per byte", fmt(base["val_bpb"])))
    core = records.get("base_eval", {}).get("metrics", {}).get("CORE")
    if core is not None:
        out.append(("CORE (base model)", fmt(core)))
    chat = records.get(f"chat_eval_{source}", {}).get("metrics", {})
    out += [(name, fmt(v)) for name, v in chat.items() if isinstance(v, (dict, float))]
    return out


GITATTRIBUTES = "*.pt filter=lfs diff=lfs merge=lfs -text\n*.pkl filter=lfs diff=lfs merge=lfs -text\n" \
                "*.whl filter=lfs diff=lfs merge=lfs -text\n"


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main(argv=None) -> str:
    args = parse_args(argv)
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise UserError(f"make_space builds wheels for this machine ({platform.system()} {platform.machine()}), but "
                        "Spaces run Linux x86_64: run it on a Linux x86_64 machine")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {args.out} is a file: give a folder (new, or a clone of your Space to update)")
    os.makedirs(out, exist_ok=True)
    for name in ("model", "wheels"):   # ours: rewritten whole (a Space clone's other files stay)
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)

    facts = copy_model(args.source, args.model_tag, args.step, args.int8, os.path.join(out, "model"))
    print(f"model: {facts['source']} {facts['tag']} step {facts['step']} from {facts['checkpoint_dir']}"
          f"{' (int8)' if args.int8 else ''}")
    wheel_name, pins = build_wheels(args.wheel, os.path.join(out, "wheels"))
    with open(os.path.join(out, "Dockerfile"), "w") as f:
        f.write(dockerfile(wheel_name, pins, args.num_workers))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(readme(facts, args.title, args.int8))
    if not os.path.exists(os.path.join(out, ".gitattributes")):
        with open(os.path.join(out, ".gitattributes"), "w") as f:
            f.write(GITATTRIBUTES)
    for d, dirs, files in os.walk(out):   # readable by the container's uid 1000 whatever the umask here
        if ".git" in dirs:
            dirs.remove(".git")
        for name in dirs:
            os.chmod(os.path.join(d, name), 0o755)
        for name in files:
            os.chmod(os.path.join(d, name), 0o644)

    mb = {name: folder_size(os.path.join(out, name)) / 1e6 for name in ("model", "wheels")}
    print(f"wrote {out}: {sum(mb.values()):.1f} MB (model {mb['model']:.1f} MB, wheels {mb['wheels']:.1f} MB)")
    print("next: create a Docker Space on huggingface.co, then push this folder, e.g.\n"
          f"  hf upload <user>/<space> {out} . --repo-type space")
    return out


if __name__ == "__main__":
    main()
