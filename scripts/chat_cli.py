"""
Chat with your model in the terminal. Replies stream as they are generated.

    python -m scripts.chat_cli                         # interactive; best checkpoint (rl > sft > mid > base)
    python -m scripts.chat_cli -p "Why is the sky blue?"   # one question, one answer, exit
    python -m scripts.chat_cli --source sft --model-tag d4 --temperature 0.6 --top-k 50 --quantize int8

In the interactive chat: `clear` starts a new conversation, `quit` (or Ctrl-D) exits, Ctrl-C stops the reply
being written (press it again at the prompt to exit). Long conversations drop their oldest turns to fit the context.
"""

import sys

from nanochat import cli
from nanochat.common import compute_init
from nanochat.engine import load_engine_from_args


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


def main(argv=None):
    parser = cli.parser("Chat with a trained nanochat model in the terminal")
    parser.add_argument("-p", "--prompt", default=None, help="ask this one question, print the answer and exit")
    cli.add_checkpoint_args(parser)
    cli.add_sampling_args(parser)
    cli.add_inference_args(parser, compile_default=False)
    cli.add_system_args(parser)
    args = parser.parse_args(argv)

    device = compute_init(args.device_type).device
    engine, name = load_engine_from_args(args, device)

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
