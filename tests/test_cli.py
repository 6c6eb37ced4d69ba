"""
Bad command lines, tried as a new user would: every script ends with one clear line that starts with "error:",
names what is wrong, and exits non-zero, never a traceback. Most cases run the scripts' main(argv) in-process
(fast); two run real processes to prove what a user sees on the terminal.

    pytest tests/test_cli.py -q
"""

import os
import subprocess
import sys

import pytest

from nanochat import cli
from scripts import base_loss, base_train, chat_cli, chat_web, tok_eval, tok_train

TINY = ["--depth", "1", "--head-dim", "32", "--max-seq-len", "32", "--device-batch-size", "2", "--compile", "off"]


@pytest.fixture
def empty_base(tmp_path, monkeypatch):
    """A base dir with nothing in it: no tokenizer, no data, no checkpoints."""
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def failure(main, argv, capsys) -> str:
    """Run main(argv), expect it to stop with a non-zero exit, return the one line it printed."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    code = stop.value.code
    assert code not in (0, None), f"{argv} exited with {code!r}"
    message = code if isinstance(code, str) else capsys.readouterr().err    # UserError carries its message
    lines = message.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), message
    return lines[0]


@pytest.mark.parametrize("main, argv, expected", [
    (base_train.main, ["--device-batch-size", "0"], "--device-batch-size: 0 is not a positive integer"),
    (base_train.main, ["--depth", "four"], "--depth: 'four' is not an integer"),
    (base_train.main, ["--time-budget", "0"], "--time-budget: 0 is not a positive number or -1"),
    (base_train.main, ["--eval-every", "-5"], "--eval-every: -5 is not a positive integer or -1"),
    (base_train.main, ["--compile", "maybe"], "--compile: invalid choice: 'maybe'"),
    (base_train.main, ["--device-type", "tpu"], "--device-type: invalid choice: 'tpu'"),
    (base_train.main, ["--warmup-ratio", "0.9"], "--warmup-ratio 0.9 + --warmdown-ratio 0.65 exceed the whole run"),
    (base_train.main, ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (base_loss.main, ["--split-tokens", "-5"], "--split-tokens: -5 is not a positive integer"),
    (base_loss.main, ["--source", "final"], "--source: invalid choice: 'final'"),
    (chat_cli.main, ["--temperature", "3"], "--temperature: 3 is not a temperature from 0 to 2"),
    (chat_cli.main, ["--top-k", "-1"], "--top-k: -1 is not an integer >= 0"),
    (chat_cli.main, ["--step", "-2"], "--step: -2 is not an integer >= 0"),
    (chat_web.main, ["--num-workers", "0"], "--num-workers: 0 is not a positive integer"),
    (chat_web.main, ["--queue-size", "-1"], "--queue-size: -1 is not an integer >= 0"),
    (tok_train.main, ["--max-chars", "0"], "--max-chars: 0 is not a positive integer"),
    (tok_eval.main, ["--max-chars", "x"], "--max-chars: 'x' is not an integer"),
])
def test_bad_flags_give_one_line(main, argv, expected, capsys, empty_base):
    line = failure(main, argv, capsys)
    assert expected in line
    assert "--help" in line                     # and says where to look


def test_missing_tokenizer_and_checkpoints_give_one_line(capsys, empty_base):
    assert "train one first with `python -m scripts.tok_train`" in failure(base_train.main, TINY, capsys)
    assert "no checkpoints under" in failure(chat_cli.main, ["-p", "hi"], capsys)
    assert "no checkpoints in" in failure(base_loss.main, [], capsys)


@pytest.mark.slow
def test_bad_resume_and_batch_give_one_line(capsys, base_dir):
    assert "--total-batch-size 100 is not a multiple of" in failure(
        base_train.main, TINY + ["--total-batch-size", "100"], capsys)
    assert "--resume 'last': use 'latest' or a step number" in failure(
        base_train.main, TINY + ["--num-iterations", "1", "--resume", "last"], capsys)
    assert "no checkpoints in" in failure(base_train.main, TINY + ["--num-iterations", "1", "--resume", "latest"], capsys)


@pytest.mark.subprocess
@pytest.mark.parametrize("argv, expected", [
    (["--device-batch-size", "0"], "error: argument --device-batch-size: 0 is not a positive integer"),
    (["--depth", "1"], "error: no tokenizer at"),
])
def test_a_real_process_prints_one_line_and_no_traceback(argv, expected, empty_base):
    proc = subprocess.run([sys.executable, "-m", "scripts.base_train", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), proc.stderr


def test_validators_accept_what_they_should():
    assert cli.positive_int("3") == 3 and cli.nonneg_int("0") == 0 and cli.int_or_off("-1") == -1
    assert cli.float_or_off("2.5") == 2.5 and cli.float_or_off("-1") == -1 and cli.temperature("0") == 0
    for check, bad in [(cli.positive_int, "0"), (cli.int_or_off, "0"), (cli.int_or_off, "-2"),
                       (cli.float_or_off, "-0.5"), (cli.temperature, "2.1"), (cli.nonneg_float, "-1e-9")]:
        with pytest.raises(Exception, match="is not"):
            check(bad)
