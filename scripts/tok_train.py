"""
Train the BPE tokenizer (rustbpe) on pretraining text and save it to <base>/tokenizer/.

    python -m scripts.tok_train                                  # hub shards if the hub answers, else offline data
    python -m scripts.tok_train --data offline --vocab-size 8192
    python -m scripts.tok_train --data my_corpus.txt --max-chars 500000000

The text comes from nanochat.dataset.iter_texts (training split only): every document is cut to --doc-cap
characters and reading stops after --max-chars characters. Text is streamed to the Rust trainer, so memory does
not grow with the size of the corpus (only with the number of distinct regex chunks).
"""

import itertools
import os
import sys
import time

from nanochat import cli, report
from nanochat.common import UserError, peak_rss_bytes
from nanochat.dataset import choose_source, invalid_utf8_count, iter_texts
from nanochat.tokenizer import Tokenizer, tokenizer_dir


def main(argv=None):
    parser = cli.parser("Train a byte-level BPE tokenizer on pretraining text.")
    cli.add_data_arg(parser)
    parser.add_argument("--vocab-size", type=cli.positive_int, default=8192,
                        help="vocabulary size including the 9 special tokens. nanochat uses 65536 on GPUs; on a CPU "
                             "the small models of train_cpu.sh (depth 4-6) would spend most of their parameters on "
                             "a 65536-row embedding, so the default is 8192")
    parser.add_argument("--max-chars", type=cli.positive_int, default=200_000_000,
                        help="stop after this many characters of text (nanochat uses 2e9 on GPU nodes; the default "
                             "is more than the whole offline corpus)")
    parser.add_argument("--doc-cap", type=cli.positive_int, default=10_000,
                        help="cut each document to at most this many characters (a few huge documents should not "
                             "dominate the statistics)")
    parser.add_argument("--output-dir", default=None, help="where to save (default: <base>/tokenizer)")
    args = parser.parse_args(argv)

    source = choose_source(args.data)
    documents = iter_texts(source, "train", max_chars=args.max_chars, doc_cap=args.doc_cap)
    first = next(documents, None)  # an empty corpus fails here, before any training
    if first is None:
        raise UserError(f"the training split of {source!r} has no documents: give a source with text in it")
    print(f"training a {args.vocab_size}-token BPE on up to {args.max_chars:,} characters of {source!r} "
          f"(documents cut at {args.doc_cap:,})", flush=True)

    from tqdm import tqdm
    counted = {"docs": 0, "chars": 0}
    progress = tqdm(total=args.max_chars, unit="char", unit_scale=True, desc="text", file=sys.stderr)

    def texts():
        for text in itertools.chain([first], documents):
            counted["docs"] += 1
            counted["chars"] += len(text)
            progress.update(len(text))
            yield text

    t0 = time.time()
    try:
        tokenizer = Tokenizer.train_from_iterator(texts(), args.vocab_size)
    except ValueError as e:  # e.g. too little text for the vocabulary size: the message says what to change
        raise UserError(str(e)) from None
    progress.close()
    seconds = time.time() - t0
    out = args.output_dir or tokenizer_dir()
    tokenizer.save(out)

    # a quick check that the result round-trips and a summary of what was learnt
    sample = "Hello world! The tokenizer was trained in 2025 on real text: héllo, 你好, <|bos|>."
    assert tokenizer.decode(tokenizer.encode(sample)) == sample
    token_bytes = tokenizer.token_bytes()
    normal = token_bytes[token_bytes > 0].float()
    print(f"trained on {counted['docs']:,} documents, {counted['chars']:,} characters in {seconds:.1f}s "
          f"(peak RSS {peak_rss_bytes() / 2**20:.0f} MiB)")
    if invalid_utf8_count():
        print(f"{invalid_utf8_count():,} invalid UTF-8 sequences in the input were replaced by U+FFFD")
    print(f"vocab {tokenizer.get_vocab_size():,} tokens; token length in bytes: mean {normal.mean():.2f}, "
          f"max {int(normal.max())}")
    print(f"saved to {os.path.join(out, 'tokenizer.pkl')} and {os.path.join(out, 'token_bytes.pt')}")
    report.record("tok_train", settings={"data": source, "vocab_size": args.vocab_size, "max_chars": args.max_chars},
                  seconds=seconds, metrics={"documents": counted["docs"], "characters": counted["chars"],
                                            "mean_token_bytes": round(float(normal.mean()), 3)})


if __name__ == "__main__":
    main()
