"""
speedrun.sh: --dry-run prints every stage's command, each of which names a real module and only flags that module
accepts; without a GPU the real run refuses with one clear line.

    pytest tests/test_speedrun.py -q
"""

import importlib
import os
import re
import shlex
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dry_run(**env) -> str:
    out = subprocess.run(["bash", "speedrun.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def commands(text: str) -> list[list[str]]:
    """The printed commands, as argument lists starting at the module name."""
    found = []
    for line in text.splitlines():
        words = shlex.split(line) if line.startswith(("python ", "torchrun ")) else []
        if "-m" in words:
            found.append(words[words.index("-m") + 1:])
    return found


def accepted_flags(module: str, capsys) -> set[str]:
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit):
        main(["--help"])
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", capsys.readouterr().out))


def test_dry_run_commands_are_real(capsys):
    text = dry_run(NPROC="8")
    assert "21400 steps of 524288 tokens (32 x 2048 x 8 GPUs x 1 accumulation)" in text     # depth 20
    stages = commands(text)
    modules = [c[0] for c in stages]
    for needed in ("nanochat.dataset", "scripts.tok_train", "scripts.base_train", "scripts.base_eval",
                   "scripts.mid_train", "scripts.chat_sft", "scripts.chat_rl", "scripts.chat_eval", "nanochat.report"):
        assert needed in modules, needed
    assert text.count("torchrun --standalone --nproc_per_node=8") == 4      # the data-parallel training stages
    for module, *args in stages:
        if module == "nanochat.dataset":       # its main() reads sys.argv; -n is checked by test_dataset
            continue
        flags = {a for a in args if a.startswith("--")}
        unknown = flags - accepted_flags(module, capsys)
        assert not unknown, f"{module} does not accept {unknown}"
    assert "4 accumulation" in dry_run(NPROC="2")


def test_bad_nproc_and_no_gpu_are_refused():
    out = subprocess.run(["bash", "speedrun.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "NPROC": "3"}, timeout=60)
    assert out.returncode == 2 and "NPROC=3 must be 1, 2, 4 or 8" in out.stderr
    if os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    out = subprocess.run(["bash", "speedrun.sh"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().startswith("error: speedrun.sh needs a CUDA GPU")
    assert len(out.stderr.strip().splitlines()) == 1
