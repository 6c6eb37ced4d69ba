"""
Command-line pieces every script shares, so that a flag means the same thing, with the same help text and the same
check, wherever it appears:

    from nanochat import cli
    p = cli.parser("Chat with a trained model", __doc__)
    cli.add_checkpoint_args(p)       # --source --model-tag --step
    cli.add_system_args(p)           # --device-type
    args = p.parse_args(argv)

Values are checked where the flag is defined (`type=cli.positive_int`, ...). A bad value ends the script with
one line, `error: argument --device-batch-size: 0 is not a positive integer (see --help)`, and exit code 2:
never a traceback from deep inside.

Every script also takes `--config FILE`, a .yaml or .json file of flag values, so that an experiment can be kept
next to its results (examples in examples/configs/):

    depth: 6                  # keys are the flags' names (device-batch-size or device_batch_size)
    device-batch-size: 16
    compile: true             # a switch takes true / false

Flags on the command line override the file. A key the script does not have, or a value its flag would refuse,
is the same one-line error, naming the file and the key. A checkpoint's meta_*.json works as a config file too
(its "user_config", the resolved flags the run was started with), which reruns that run.
"""

import argparse
import json
import sys
from pathlib import Path

STAGES = ("base", "mid", "sft", "rl")


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and one-line errors (argparse's own prints the whole usage first)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--config", metavar="FILE", default=None,
                          help="a .yaml or .json file of flag values (keys: the flags' names; flags given here "
                               "override it), or a checkpoint's meta_*.json to rerun its run")

    def error(self, message):
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", default=None)
        path = pre.parse_known_args(args)[0].config
        if path:   # the file's values become the defaults, so that the command line still wins
            self.set_defaults(**self._read_config(path))
        namespace, extras = super().parse_known_args(args, namespace)
        del namespace.config    # the resolved values are the configuration: a checkpoint saves those, not a path
        return namespace, extras

    def _read_config(self, path: str) -> dict:
        """The file's values by dest, each checked and converted as its flag would be on the command line."""
        import yaml     # here, not at the top: the Space serves with a smaller set of packages (no PyYAML)
        try:
            text = Path(path).read_text()
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            self.error(f"--config {path}: cannot read it: {' '.join(str(e).split())}")   # (YAML's are multi-line)
        if isinstance(data, dict) and isinstance(data.get("user_config"), dict):
            data = data["user_config"]      # a checkpoint's meta JSON
        if not isinstance(data, dict):
            self.error(f"--config {path}: expected a mapping of flag names to values, got {type(data).__name__}")
        actions = {}
        for action in self._actions:
            if action.dest not in ("help", "config"):
                actions[action.dest] = action
                for option in action.option_strings:
                    actions[option.lstrip("-")] = action
        values = {}
        for key, value in data.items():
            action = actions.get(str(key))
            if action is None:
                names = sorted({a.option_strings[-1] if a.option_strings else a.dest for a in actions.values()})
                self.error(f"--config {path}: unknown key {key!r}; this script's keys are: "
                           + ", ".join(n.lstrip("-") for n in names))
            try:
                values[action.dest] = _config_value(action, value)
            except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
                self.error(f"--config {path}: key {key!r}: {e}")
            action.required = False     # given by the file
        return values


def _config_value(action: argparse.Action, value):
    """A config file's value for one flag, checked as argparse checks the flag's text."""
    if value is None:
        if action.default is None:
            return None
        raise ValueError(f"null is not allowed (the default is {action.default!r})")
    if action.nargs == 0:           # a switch: store_true, store_false, --x/--no-x
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not a list")
        return [_config_scalar(action, v) for v in value]
    return _config_scalar(action, value)


def _config_scalar(action: argparse.Action, value):
    if isinstance(value, bool) and action.choices is not None and {"on", "off"} <= set(action.choices):
        value = "on" if value else "off"    # YAML reads a bare on / off as true / false
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is for a switch, and this flag is not one")
    if isinstance(value, (list, dict)):
        raise ValueError(f"{value!r} is not a single value")
    converted = action.type(str(value)) if action.type else str(value)
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def parser(description: str, epilog: str | None = None) -> Parser:
    return Parser(description=description, epilog=epilog)


# -----------------------------------------------------------------------------
# Value checks (argparse turns ArgumentTypeError into the one-line error above)

def _number(kind, text: str, ok, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonneg_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def int_or_off(text: str) -> int:
    """A count where -1 means "off" (as in --eval-every -1)."""
    return _number(int, text, lambda v: v >= 1 or v == -1, "a positive integer or -1 (off)")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: v > 0, "a positive number")


def float_or_off(text: str) -> float:
    """A positive amount where -1 (any negative) means "off", as in --time-budget -1."""
    return _number(float, text, lambda v: v > 0 or v == -1, "a positive number or -1 (off)")


def nonneg_float(text: str) -> float:
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def temperature(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v <= 2, "a temperature from 0 to 2")


# -----------------------------------------------------------------------------
# Flag groups

def add_checkpoint_args(p, default_source: str | None = None, short: str | None = None):
    """Which checkpoint to load. Without --source: the most trained stage that has one (rl, sft, mid, base).
    short: an extra short name for --source (chat_eval's `-i sft`)."""
    g = p.add_argument_group("checkpoint")
    g.add_argument(*([short] if short else []), "--source", choices=STAGES, default=default_source,
                   help="checkpoint stage" + (f" (default {default_source})" if default_source else
                                              " (none given: the most trained one available, rl > sft > mid > base)"))
    g.add_argument("--model-tag", default=None, help="model folder, e.g. d4 (default: the deepest model)")
    g.add_argument("--step", type=nonneg_int, default=None, help="checkpoint step (default: the latest)")


def add_learning_rate_args(p, init_lr_frac: float | None = None):
    """Pretraining's learning rates; a later stage (init_lr_frac given) also gets --init-lr-frac, which scales them."""
    g = p.add_argument_group("optimization")
    if init_lr_frac is not None:
        g.add_argument("--init-lr-frac", type=positive_float, default=init_lr_frac,
                       help="learning rates as a fraction of the three below (pretraining's)")
    g.add_argument("--matrix-lr", type=positive_float, default=0.02, help="Muon learning rate (block matrices)")
    g.add_argument("--embedding-lr", type=positive_float, default=0.2, help="AdamW learning rate of the embedding")
    g.add_argument("--unembedding-lr", type=positive_float, default=0.004, help="AdamW learning rate of the lm_head")
    return g


def add_inference_args(p, compile_default: bool):
    """How the chat engine runs the model."""
    g = p.add_argument_group("inference")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="dtype of the activations (with --quantize none: of the weights too)")
    g.add_argument("--quantize", choices=["auto", "none", "int8"], default="auto",
                   help="int8 weight-only quantization; auto = int8 on CPUs with native bf16 matmul, else none")
    g.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads for generation (1 is never slowed down by other busy processes; "
                        "see README.md for when 2 pays)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=compile_default,
                   help="torch.compile the batch-1 decode step (slower start, faster replies; eager if it fails)")
    g.add_argument("--backend", choices=["torch", "onnx", "openvino"], default="torch",
                   help="run the model in torch, or its export (python -m scripts.export) in ONNX Runtime or "
                        "OpenVINO (fp32 graphs: --dtype, --quantize and --compile are torch's)")


def add_sampling_args(p, temperature_default: float = 0.6):
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=temperature, default=temperature_default, help="sampling temperature (0 = greedy)")
    g.add_argument("--top-k", type=nonneg_int, default=50, help="sample among the k most likely tokens (0 = all)")
    g.add_argument("--max-tokens", type=positive_int, default=512, help="longest reply, in tokens")
    g.add_argument("--seed", type=int, default=42, help="random seed of the sampler")


def add_data_arg(p, default: str = "auto"):
    p.add_argument("--data", default=default,
                   help="text source: auto (the hub if it answers, else offline), hub, offline, or a .txt / .jsonl "
                        "file or a folder of .parquet / .txt / .jsonl files")


def add_system_args(p):
    g = p.add_argument_group("system")
    g.add_argument("--device-type", default=None, choices=["cuda", "cpu", "mps"],
                   help="cuda, cpu or mps (default: cuda if a GPU is visible, else cpu)")
