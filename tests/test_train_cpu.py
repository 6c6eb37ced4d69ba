"""
train_cpu.sh --full on a tiny configuration, killed (SIGKILL, as by the OOM killer or a closed laptop) during
pretraining and again during SFT: each re-run continues from the last checkpoint of the stage it was killed in,
skips the stages that finished, and the run ends with every stage done and the report written.

It needs a base directory where train_cpu.sh has run once (the shards, the tokenizer and the eval data are reused
through hard links, not rebuilt; the stage markers and the report are copied; that directory is never written to): .ci/run runs it after its smoke run with
    NANOCHAT_SMOKE_BASE_DIR=<that dir> python -m pytest -q tests/test_train_cpu.py
Without the variable the test is skipped (the rest of the suite never downloads or builds the offline data).
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE_DIR = os.environ.get("NANOCHAT_SMOKE_BASE_DIR")
pytestmark = [pytest.mark.subprocess,
              pytest.mark.skipif(not SMOKE_DIR, reason="set NANOCHAT_SMOKE_BASE_DIR to a base dir where "
                                                       "train_cpu.sh ran (.ci/run does)")]
READ_ONLY = ("base_data", "offline_data", "tokenizer", "packages", "eval_bundle", "eval_bundle_offline")
BASE_STEPS, SFT_STEPS = 40, 24
TINY = {  # depth 2, context 128, small batches and mixtures; checkpoints often enough to be killed between two
    "FULL": "1", "DEPTH": "2", "CORE_ITEMS": "4", "CHAT_PROBLEMS": "2",
    "BASE_ARGS": f"--time-budget -1 --num-iterations {BASE_STEPS} --save-every 5 --compile off --eval-every -1 "
                 "--max-seq-len 128 --device-batch-size 4 --total-batch-size 1024 --eval-tokens 8192",
    "MID_ARGS": "--time-budget -1 --num-iterations 4 --eval-every -1 --total-batch-size 1024 --eval-tokens 4096 "
                "--mixture-scale 0.05 --compile off",
    "SFT_ARGS": f"--time-budget -1 --num-iterations {SFT_STEPS} --save-every 4 --eval-every -1 --chat-eval-every -1 "
                "--examples-per-step 4 --device-batch-size 4 --eval-tokens 4096 --mixture-scale 0.05 --compile off",
    "RL_ARGS": "--time-budget -1 --num-iterations 2 --examples-per-step 2 --num-samples 2 --max-tokens 32 "
               "--eval-problems 2 --eval-samples 2",
}


def start(base: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, **TINY, "NANOCHAT_BASE_DIR": str(base)}
    env.pop("FORCE", None)
    return subprocess.Popen(["bash", "train_cpu.sh"], cwd=REPO, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_after_checkpoint(proc: subprocess.Popen, folder: Path, step: int, timeout: float = 600):
    """SIGKILL the whole run (bash, python, tee) as soon as folder holds the checkpoint of `step`."""
    meta = folder / f"meta_{step:06d}.json"
    deadline = time.time() + timeout
    while not meta.exists():
        assert proc.poll() is None, f"train_cpu.sh ended (rc {proc.returncode}) before {meta} appeared"
        assert time.time() < deadline, f"no {meta} after {timeout} s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def steps_in(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("meta_*.json"))


def test_killed_full_run_continues_from_its_last_checkpoints(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    for name in READ_ONLY:      # hard links: this run only reads them
        if (Path(SMOKE_DIR) / name).exists():
            subprocess.run(["cp", "-al", str(Path(SMOKE_DIR) / name), str(base / name)], check=True)
    for name in ("train_cpu", "report"):   # written in place by the run (markers, logs): real copies
        shutil.copytree(Path(SMOKE_DIR) / name, base / name)
    base_ckpt, sft_ckpt = base / "base_checkpoints" / "d2", base / "chatsft_checkpoints" / "d2"
    logs = base / "logs"

    # 1. killed during pretraining, right after its step-10 checkpoint
    kill_after_checkpoint(start(base, tmp_path / "run1.log"), base_ckpt, 10)
    killed_at = steps_in(base_ckpt)[-1]
    assert 10 <= killed_at < BASE_STEPS and not (base / "train_cpu" / "base_train.done").exists()

    # 2. the re-run continues pretraining from there, then is killed during SFT after its step-8 checkpoint
    proc = start(base, tmp_path / "run2.log")
    kill_after_checkpoint(proc, sft_ckpt, 8)
    run2 = (tmp_path / "run2.log").read_text()
    assert "=== tok_train: finished before, skipped" in run2
    assert f"=== base_train: continuing from its last checkpoint in {base_ckpt}" in run2
    base_log = (logs / "base_train.log").read_text()    # this run's base_train output only
    assert re.search(rf"resumed from step {killed_at} of ", base_log)
    assert f"step {killed_at + 1:05d} " in base_log and f"step {killed_at:05d} " not in base_log  # none done twice
    assert steps_in(base_ckpt)[-1] == BASE_STEPS
    sft_killed_at = steps_in(sft_ckpt)[-1]
    assert 8 <= sft_killed_at < SFT_STEPS

    # 3. the last re-run skips everything up to SFT, continues SFT, and finishes the pipeline
    proc = start(base, tmp_path / "run3.log")
    assert proc.wait(timeout=1200) == 0, (tmp_path / "run3.log").read_text()[-3000:]
    run3 = (tmp_path / "run3.log").read_text()
    for stage in ("base_train", "base_loss", "base_eval", "mid_train", "chat_eval_mid"):
        assert f"=== {stage}: finished before, skipped" in run3
    assert f"=== chat_sft: continuing from its last checkpoint in {sft_ckpt}" in run3
    assert re.search(rf"resumed from step {sft_killed_at} of ", (logs / "chat_sft.log").read_text())
    assert steps_in(sft_ckpt)[-1] == SFT_STEPS
    for stage in ("chat_sft", "chat_eval_sft", "chat_rl", "chat_eval_rl"):
        assert (base / "train_cpu" / f"{stage}.done").exists()
    report = (base / "report" / "report.md").read_text()
    assert "## chat_sft" in report and "## chat_rl" in report and "chat_sft_by_step.png" in report
