"""
Save and load checkpoints: model_<step>.pt (tensors), optim_<step>.pt (optimizer states), meta_<step>.json
(model config, user config, step, metrics, data-loader position) in <base>/<stage>_checkpoints/<model_tag>/.

Every file is written atomically (temp file + rename) and the meta file is written last, so a step whose meta
exists is complete: a run killed mid-save leaves the previous checkpoint as the latest one.

Used by the training scripts (`--resume`) and by everything that loads a trained model:
    model, tokenizer, meta = load_model("base", device, phase="eval")
    model, tokenizer, meta = load_model(best_source(), device)     # the most trained stage: rl > sft > mid > base
"""

import glob
import json
import os
import re

import torch

from nanochat.common import UserError, atomic_write, get_base_dir, logger

STAGE_DIRS = {"base": "base_checkpoints", "mid": "mid_checkpoints", "sft": "chatsft_checkpoints",
              "rl": "chatrl_checkpoints"}


def _paths(checkpoint_dir: str, step: int) -> dict[str, str]:
    return {kind: os.path.join(checkpoint_dir, f"{kind}_{step:06d}.{ext}")
            for kind, ext in (("model", "pt"), ("optim", "pt"), ("meta", "json"))}


def save_checkpoint(checkpoint_dir: str, step: int, model_data: dict, optimizer_data, meta_data: dict):
    """Write model, optimizer (if not None) and meta for `step`; meta goes last and marks the step complete."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    paths = _paths(checkpoint_dir, step)
    atomic_write(paths["model"], lambda f: torch.save(model_data, f))
    if optimizer_data is not None:
        atomic_write(paths["optim"], lambda f: torch.save(optimizer_data, f))
    text = json.dumps(meta_data, indent=2, default=str).encode()
    atomic_write(paths["meta"], lambda f: f.write(text))
    logger.info("saved checkpoint step %d to %s", step, checkpoint_dir)


def _torch_load(path: str, device):
    if not os.path.exists(path):
        raise UserError(f"checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:   # truncated zip, wrong format, pickled junk...
        raise UserError(f"checkpoint file {path} is corrupt or not a torch checkpoint ({type(e).__name__}: {e}); "
                        "delete it or resume from another step") from None


def load_checkpoint(checkpoint_dir: str, step: int, device, load_optimizer: bool = False):
    """-> (model_data, optimizer_data or None, meta_data)."""
    paths = _paths(checkpoint_dir, step)
    if not os.path.exists(paths["meta"]):
        raise UserError(f"no checkpoint for step {step}: {paths['meta']} does not exist "
                        f"(steps present: {list_steps(checkpoint_dir) or 'none'})")
    try:
        with open(paths["meta"]) as f:
            meta_data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"checkpoint meta file {paths['meta']} is not valid JSON ({e})") from None
    model_data = _torch_load(paths["model"], device)
    optimizer_data = _torch_load(paths["optim"], device) if load_optimizer else None
    return model_data, optimizer_data, meta_data


def list_steps(checkpoint_dir: str) -> list[int]:
    """Steps with a complete checkpoint (a meta file), ascending."""
    steps = []
    for path in glob.glob(os.path.join(checkpoint_dir, "meta_*.json")):
        m = re.fullmatch(r"meta_(\d+)\.json", os.path.basename(path))
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def find_last_step(checkpoint_dir: str) -> int:
    steps = list_steps(checkpoint_dir)
    if not steps:
        raise UserError(f"no checkpoints in {checkpoint_dir} (no meta_<step>.json files)")
    return steps[-1]


def find_largest_model(stage_dir: str) -> str:
    """The model tag to load by default: the deepest d<N> folder, else the most recently written one."""
    if not os.path.isdir(stage_dir) or not os.listdir(stage_dir):
        raise UserError(f"no checkpoints in {stage_dir}: train a model first (e.g. `python -m scripts.base_train`)")
    tags = [t for t in os.listdir(stage_dir) if os.path.isdir(os.path.join(stage_dir, t))]
    depths = [(int(m.group(1)), t) for t in tags if (m := re.fullmatch(r"d(\d+)", t))]
    if depths:
        return max(depths)[1]
    return max(tags, key=lambda t: os.path.getmtime(os.path.join(stage_dir, t)))


def build_model_from(model_data: dict, meta_data: dict, device, source_file: str = "checkpoint"):
    """Rebuild a GPT from meta's model_config and load the tensors, naming any mismatch."""
    from nanochat.gpt import GPTConfig, build_model
    try:
        config = GPTConfig(**meta_data["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{source_file}: meta has no valid model_config ({e})") from None
    model = build_model(config, device)
    if meta_data.get("weights") == "int8":            # a shipped int8 checkpoint (scripts/make_space.py)
        from nanochat.quantize import dequantize_state_dict
        model_data = dequantize_state_dict(model_data)
    model_data = {k.removeprefix("_orig_mod."): v for k, v in model_data.items()}   # saved from a compiled model
    expected = model.state_dict()
    missing = sorted(set(expected) - set(model_data))
    unexpected = sorted(set(model_data) - set(expected))
    if missing or unexpected:
        raise UserError(f"{source_file} does not match model_config {meta_data['model_config']}: "
                        f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in model_data.items():
        if tensor.shape != expected[name].shape:
            raise UserError(f"{source_file}: tensor {name} has shape {tuple(tensor.shape)} but model_config "
                            f"{meta_data['model_config']} needs {tuple(expected[name].shape)}")
    model.load_state_dict({k: v.float() for k, v in model_data.items()})
    return model


def checkpoint_dir_for(source: str, model_tag: str | None = None) -> str:
    if source not in STAGE_DIRS:
        raise UserError(f"unknown checkpoint source {source!r}: use one of {', '.join(STAGE_DIRS)}")
    stage_dir = os.path.join(get_base_dir(), STAGE_DIRS[source])
    return os.path.join(stage_dir, model_tag or find_largest_model(stage_dir))


SOURCES_BEST_FIRST = ("rl", "sft", "mid", "base")


def best_source() -> str:
    """The most trained stage that has a checkpoint: rl, then sft, mid, base."""
    for source in SOURCES_BEST_FIRST:
        stage_dir = os.path.join(get_base_dir(), STAGE_DIRS[source])
        if os.path.isdir(stage_dir) and os.listdir(stage_dir):
            return source
    raise UserError(f"no checkpoints under {get_base_dir()}: train a model first "
                    "(e.g. `bash train_cpu.sh`, or `python -m scripts.base_train --depth 4`)")


def locate_checkpoint(source: str | None, model_tag: str | None = None, step: int | None = None):
    """-> (source, checkpoint_dir, step): the most trained stage unless `source`, the deepest model unless
    `model_tag`, the latest step unless `step`. Scripts that write results beside a checkpoint resolve it here."""
    source = source or best_source()
    checkpoint_dir = checkpoint_dir_for(source, model_tag)
    return source, checkpoint_dir, find_last_step(checkpoint_dir) if step is None else step


def load_model(source: str, device, phase: str = "eval", model_tag: str | None = None, step: int | None = None):
    """-> (model, tokenizer, meta) for stage `source` ("base", "mid", "sft", "rl"); latest step unless given."""
    from nanochat.tokenizer import get_tokenizer
    if phase not in ("train", "eval"):
        raise ValueError(f"phase must be 'train' or 'eval', not {phase!r}")
    source, checkpoint_dir, step = locate_checkpoint(source, model_tag, step)
    model_data, _, meta = load_checkpoint(checkpoint_dir, step, device)
    model = build_model_from(model_data, meta, device, _paths(checkpoint_dir, step)["model"])
    model.train(phase == "train")
    tokenizer = get_tokenizer()
    if tokenizer.get_vocab_size() != model.config.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the checkpoint in "
                        f"{checkpoint_dir} was trained with vocab_size {model.config.vocab_size}: "
                        "use the tokenizer the model was trained with (or retrain)")
    logger.info("loaded %s step %d from %s", source, step, checkpoint_dir)
    return model, tokenizer, meta
