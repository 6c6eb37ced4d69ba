"""
Chat with your model in the terminal. Replies stream as they are generated.

    python -m scripts.chat_cli                         # interactive; best checkpoint (rl > sft > mid > base)
    python -m scripts.chat_cli -p "Why is the sky blue?"   # one question, one answer, exit
    python -m scripts.chat_cli --source sft --model-tag d4 --temperature 0.6 --top-k 50 --quantize int8

In the interactive chat: `clear` starts a new conversation, `quit` (or Ctrl-D) exits, Ctrl-C stops the reply
being written (press it again at the prompt to exit). Long conversations drop their oldest turns to fit the context.
"""

import argparse
import sys

from nanochat.common import UserError, compute_init
from nanochat.engine import load_engine


def reply(engine, conversation: list[dict], args) -> str:
    """Stream one answer to stdout; Ctrl-C stops it (what was written so far is kept)."""
    prompt, max_tokens, dropped = engine.fit_prompt(conversation, args.max_tokens)
    if dropped:
        print(f"[the oldest {dropped} messages no longer fit the {engine.context_len}-token context and were left out]")
    stream = engine.stream(prompt, max_tokens=max_tokens, temperature=args.temperature, top_k=args.top_k or None,
                           seed=args.seed)
    pieces = []
    try:
        for piece in stream:
            pieces.append(piece)
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        stream.close()
        print(" [stopped]", end="")
    print()
    return "".join(pieces)


def main():
    parser = argparse.ArgumentParser(description="Chat with a trained nanochat model in the terminal")
    parser.add_argument("-p", "--prompt", default=None, help="ask this one question, print the answer and exit")
    parser.add_argument("--source", choices=["base", "mid", "sft", "rl"], default=None,
                        help="checkpoint stage (default: the most trained one available: rl, sft, mid, base)")
    parser.add_argument("--model-tag", default=None, help="model folder, e.g. d4 (default: the largest)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (0 = greedy)")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens (0 = all)")
    parser.add_argument("--max-tokens", type=int, default=512, help="longest reply, in tokens")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the sampler")
    parser.add_argument("--device-type", default="", help="cpu or cuda (default: autodetect)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="inference dtype")
    parser.add_argument("--quantize", choices=["auto", "none", "int8"], default="auto",
                        help="int8 weight-only quantization; auto = int8 on CPUs with native bf16 (faster there), else none")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: never slowed down by other busy processes; 2 can be faster on an idle "
                             "machine, see README)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step (slow start)")
    args = parser.parse_args()
    if not 0 <= args.temperature <= 2:
        raise UserError(f"--temperature {args.temperature}: use a value from 0 to 2")
    if args.top_k < 0 or args.max_tokens < 1:
        raise UserError("--top-k must be >= 0 and --max-tokens >= 1")

    _, _, _, _, device = compute_init(args.device_type)
    engine, name = load_engine(args.source, args.model_tag, args.step, device, args.dtype, args.quantize, args.compile,
                               threads=args.threads)

    if args.prompt is not None:
        reply(engine, [{"role": "user", "content": args.prompt}], args)
        return

    print(f"nanochat ({name}). Type a message; 'clear' starts over, 'quit' exits, Ctrl-C stops a reply.")
    conversation = []
    while True:
        try:
            text = input("\nYou: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if text.lower() in ("quit", "exit"):
            return
        if text.lower() == "clear":
            conversation = []
            print("[new conversation]")
            continue
        if not text:
            continue
        conversation.append({"role": "user", "content": text})
        print("Assistant: ", end="", flush=True)
        conversation.append({"role": "assistant", "content": reply(engine, conversation, args)})


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:   # e.g. piped into `head`
        sys.exit(0)
