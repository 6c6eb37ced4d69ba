"""
Export a checkpoint for CPU inference runtimes: ONNX (ONNX Runtime) or OpenVINO IR, with the KV cache as the graphs'
inputs and outputs (nanochat/export.py has the layout). chat_cli and chat_web then run it with --backend.

    python -m scripts.export --format onnx                 # the most trained checkpoint (rl > sft > mid > base)
    python -m scripts.export --format openvino --source sft --model-tag d4
    python -m scripts.chat_cli --backend onnx

Output: <base>/export/<stage>_<tag>_step<N>/ with prefill and decode graphs, the tokenizer and export.json. It checks
the export before it finishes: the exported logits against torch's on a prompt and a few decoded tokens.
"""

import os

import torch

from nanochat import cli
from nanochat.checkpoint_manager import load_model, locate_checkpoint
from nanochat.common import UserError
from nanochat.engine import KVCache
from nanochat.export import ExportedModel, export_dir, export_model


def parse_args(argv=None):
    p = cli.parser("Export a checkpoint to ONNX or OpenVINO for CPU inference", __doc__)
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx", help="what to write")
    p.add_argument("--out", default=None, help="folder to write (default <base>/export/<stage>_<tag>_step<N>, "
                                                "where chat_cli/chat_web --backend look)")
    cli.add_checkpoint_args(p)
    return p.parse_args(argv)


def max_logit_error(model, exported, tokens: list[int], decode_steps: int = 4) -> float:
    """Largest |logit difference| between torch and the export over a prefill and decode_steps greedy tokens."""
    full_ids = list(tokens)
    cache = KVCache(1, len(tokens) + decode_steps, exported.config.n_layer)
    worst, ids = 0.0, torch.tensor([tokens])
    for _ in range(decode_steps + 1):
        logits = exported(ids, cache)[:, -1]
        with torch.no_grad():
            reference = model(torch.tensor([full_ids]))[:, -1]
        worst = max(worst, (logits - reference).abs().max().item())
        nxt = int(reference.argmax())
        full_ids.append(nxt)
        ids = torch.tensor([[nxt]])
    return worst


def main(argv=None) -> dict:
    args = parse_args(argv)
    source, checkpoint_dir, step = locate_checkpoint(args.source, args.model_tag, args.step)
    tag = os.path.basename(checkpoint_dir)
    model, tokenizer, _ = load_model(source, torch.device("cpu"), phase="eval", model_tag=tag, step=step)
    out = args.out or export_dir(source, tag, step)
    print(f"exporting {source} {tag} step {step} as {args.format} to {out}")
    meta = export_model(model, tokenizer, out, args.format, {"stage": source, "model_tag": tag, "step": step})
    exported = ExportedModel(out, args.format, precision="f32" if args.format == "openvino" else None)
    prompt = tokenizer.render_for_completion({"messages": [{"role": "user", "content": "Why is the sky blue?"}]})
    error = max_logit_error(model.float(), exported, prompt)
    if error > 1e-2:
        raise UserError(f"the export's logits differ from torch's by up to {error:.3g}: it is not usable")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if os.path.isfile(os.path.join(out, f)))
    print(f"wrote {out} in {meta['export_seconds']:.0f} s ({size / 2**20:.1f} MiB); logits match torch's within "
          f"{error:.1e}. Chat with it: python -m scripts.chat_cli --backend {args.format}" +
          ("" if args.out is None else " (it looks in the default folder: copy it there or export without --out)"))
    return {"out": out, "max_logit_error": error, **meta}


if __name__ == "__main__":
    main()
