"""
Bits per byte of a trained base model on the train and val splits, plus a few greedy samples.

    python -m scripts.base_loss                          # latest base checkpoint of the deepest model
    python -m scripts.base_loss --model-tag d4 --step 1000 --split-tokens 524288 --data offline
    torchrun --standalone --nproc_per_node=8 -m scripts.base_loss --data hub    # GPUs: ranks split the tokens
"""

import time

from nanochat import cli, report
from nanochat.checkpoint_manager import load_model
from nanochat.common import autocast_ctx, compute_cleanup, compute_init, print0
from nanochat.dataloader import tokenizing_distributed_data_loader
from nanochat.loss_eval import evaluate_bpb
from nanochat.tokenizer import get_token_bytes

PROMPTS = ["The capital of France is", "The chemical symbol of gold is", "If yesterday was Friday, then tomorrow will be",
           "The opposite of hot is", "The planets of the solar system are:", "My favorite color is"]


def main(argv=None):
    t_start = time.time()
    p = cli.parser("Train/val bits per byte and samples of a base model")
    cli.add_checkpoint_args(p, default_source="base")
    p.add_argument("--device-batch-size", type=cli.positive_int, default=8, help="sequences per forward pass")
    p.add_argument("--split-tokens", type=cli.positive_int, default=262144, help="tokens evaluated per split")
    cli.add_data_arg(p)
    p.add_argument("--max-new-tokens", type=cli.nonneg_int, default=24, help="tokens per greedy sample (0 = no samples)")
    cli.add_system_args(p)
    args = p.parse_args(argv)

    compute = compute_init(args.device_type)
    device, dtype, world_size = compute.device, compute.dtype, compute.world_size
    model, tokenizer, meta = load_model(args.source, device, phase="eval", model_tag=args.model_tag, step=args.step)
    token_bytes = get_token_bytes(device)
    B, T = args.device_batch_size, model.config.sequence_len
    steps = max(1, args.split_tokens // (B * T * world_size))       # per rank; evaluate_bpb sums over ranks
    results, samples = {}, []
    for split in ("train", "val"):
        loader = tokenizing_distributed_data_loader(tokenizer, B, T, split, source=args.data, device=device)
        try:
            results[split] = evaluate_bpb(model, loader, steps, token_bytes, dtype)
        finally:
            loader.close()
        print0(f"{split} bpb: {results[split]:.4f} ({steps * B * T * world_size:,} tokens)")
    for prompt in PROMPTS if args.max_new_tokens > 0 and compute.master else []:
        ids = tokenizer.encode(prompt, prepend="<|bos|>")
        with autocast_ctx(device, dtype):
            out = list(model.generate(ids, max_tokens=args.max_new_tokens, temperature=0))
        samples.append(f"{prompt!r} -> {tokenizer.decode(out)!r}")
        print0(samples[-1])
    report.record("base_loss", settings=vars(args), seconds=time.time() - t_start,
                  metrics={f"{split}_bpb": value for split, value in results.items()}, text="\n".join(samples))
    compute_cleanup()
    return results


if __name__ == "__main__":
    main()
