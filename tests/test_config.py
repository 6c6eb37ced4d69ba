"""
--config FILE (nanochat/cli.py): a .yaml / .json file of flag values that every script takes. The command line
overrides it, a bad key or value is a one-line error naming the key, the example files parse, and a checkpoint's
meta JSON passed back as the config reruns the same run.

    pytest tests/test_config.py -q
"""

import importlib
import json
from pathlib import Path

import pytest

from scripts import base_train, chat_rl

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "configs").glob("*.*"))


def write(tmp_path, text: str, name: str = "run.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def one_line_error(parse, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --config "), lines
    return lines[0]


def test_file_values_are_used_and_the_command_line_wins(tmp_path):
    path = write(tmp_path, "depth: 6\ndevice-batch-size: 16\ntime_budget: 2.5\ncompile: on\nrun: 5\n")
    args = base_train.parse_args(["--config", path])
    assert (args.depth, args.device_batch_size, args.time_budget, args.compile, args.run) == (6, 16, 2.5, "on", "5")
    args = base_train.parse_args(["--depth", "5", "--config", path, "--compile", "off"])
    assert (args.depth, args.device_batch_size, args.compile) == (5, 16, "off")
    assert not hasattr(args, "config"), "the saved configuration holds the resolved values, not the file's path"
    assert base_train.parse_args([]).depth == 4, "a file changes only the run that is given it"


def test_switches_and_json(tmp_path):
    path = write(tmp_path, json.dumps({"spelling-bee": False, "eval_greedy": True, "num-samples": 4}), "rl.json")
    args = chat_rl.parse_args(["--config", path])
    assert (args.spelling_bee, args.eval_greedy, args.num_samples) == (False, True, 4)
    assert chat_rl.parse_args(["--config", path, "--spelling-bee"]).spelling_bee is True


@pytest.mark.parametrize("text, expected", [
    ("depht: 6\n", "unknown key 'depht'; this script's keys are: "),
    ("depth: four\n", "key 'depth': 'four' is not an integer"),
    ("depth: 4.5\n", "key 'depth': '4.5' is not an integer"),
    ("depth: true\n", "key 'depth': True is for a switch, and this flag is not one"),
    ("device-batch-size: 0\n", "key 'device-batch-size': 0 is not a positive integer"),
    ("compile: maybe\n", "key 'compile': 'maybe' is not one of auto, on, off"),
    ("depth: [4, 6]\n", "key 'depth': [4, 6] is not a single value"),
    ("depth: null\n", "key 'depth': null is not allowed (the default is 4)"),
    ("- depth\n", "expected a mapping of flag names to values, got list"),
    ("depth: [\n", "cannot read it"),
])
def test_bad_files_give_one_line_naming_the_key(tmp_path, capsys, text, expected):
    assert expected in one_line_error(base_train.parse_args, ["--config", write(tmp_path, text)], capsys)


def test_a_switch_needs_true_or_false(tmp_path, capsys):
    message = one_line_error(chat_rl.parse_args, ["--config", write(tmp_path, "eval-greedy: 1\n")], capsys)
    assert "key 'eval-greedy': 1 is not true or false" in message


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert "cannot read it" in one_line_error(base_train.parse_args, ["--config", str(tmp_path / "no.yaml")], capsys)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_parse_with_their_script(path, capsys):
    """examples/configs/<script>.<name>.yaml: each key is valid for that script (--help parses, prints, exits 0)."""
    script = importlib.import_module(f"scripts.{path.name.split('.')[0]}")
    with pytest.raises(SystemExit) as stop:
        script.main(["--config", str(path), "--help"])
    assert stop.value.code == 0, capsys.readouterr().err


@pytest.mark.slow
def test_a_checkpoint_meta_reruns_its_run(base_dir):
    """The resolved flags saved in the checkpoint's meta JSON, given back as --config, make the same run."""
    first = base_train.main(["--depth", "1", "--head-dim", "32", "--max-seq-len", "32", "--device-batch-size", "2",
                             "--compile", "off", "--data", str(base_dir / "corpus.txt"), "--total-batch-size", "128",
                             "--num-iterations", "3", "--seed", "7"])
    meta = base_dir / "base" / "base_checkpoints" / "d1" / "meta_000003.json"
    saved = json.loads(meta.read_text())["user_config"]
    assert saved["seed"] == 7 and "config" not in saved
    again = base_train.main(["--config", str(meta)])
    assert again["losses"] == pytest.approx(first["losses"], rel=1e-6)
    assert json.loads(meta.read_text())["user_config"] == saved
