"""
Benchmark: tokens/s of the pretraining loader at T=512, side by side with the training tokens/s of a depth-4 model
on the same cores, so we know data loading is never the bottleneck (target: loader >= 5x training).

    flock /tmp/bench.lock python -m dev.bench_dataloader                       # offline data, <base>/tokenizer
    flock /tmp/bench.lock python -m dev.bench_dataloader --data my.txt --tokenizer-dir /tmp/tok --threads 2
    flock /tmp/bench.lock python -m dev.bench_dataloader --buffer-size 1000 4000 --batches 2000 --train-steps 0

The loader runs alone first (its background tokenizer thread plus the packing in the main thread), then a few
depth-4 forward/backward/optimizer steps are timed with the same batch shape. The share of tokens dropped is
measured after the first batch, once the document buffer is full; it is only the steady-state figure when the
buffer turns over many times (batches x B x T tokens >> buffer size x mean document length): a buffer that is
large against the run defers its hardest-to-place documents past the end and looks better than it is.
"""

import argparse
import time

import torch

from nanochat.dataloader import drop_share, tokenizing_distributed_data_loader
from nanochat.dataset import choose_source
from nanochat.tokenizer import Tokenizer, tokenizer_dir


def bench_loader(tok, source, B, T, batches, threads, buffer_size):
    loader = tokenizing_distributed_data_loader(tok, B, T, "train", source=source, tokenizer_threads=threads,
                                                buffer_size=buffer_size)
    _, _, start = next(loader)  # start-up (opening files, filling the buffer) is not steady state
    t0 = time.perf_counter()
    for _ in range(batches):
        _, _, state = next(loader)
    seconds = time.perf_counter() - t0
    steady = {k: state[k] - start[k] for k in ("tokens_used", "tokens_dropped")}
    return batches * B * T / seconds, drop_share(steady)


def bench_training(vocab_size, B, T, steps):
    from nanochat.common import autocast_ctx, compute_dtype
    from nanochat.gpt import build_model, config_from_depth
    device = torch.device("cpu")
    dtype = compute_dtype(device)
    model = build_model(config_from_depth(4, vocab_size, T), device)
    optimizers = model.setup_optimizers()
    x = torch.randint(0, vocab_size, (B, T))
    y = torch.randint(0, vocab_size, (B, T))
    times = []
    for step in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        with autocast_ctx(device, dtype):
            loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return B * T / (sum(times[2:]) / steps), dtype


def main():
    parser = argparse.ArgumentParser(description="Loader tokens/s vs depth-4 training tokens/s at T=512.")
    parser.add_argument("--data", default="offline", help="data source (auto, hub, offline, or a path)")
    parser.add_argument("--tokenizer-dir", default=None, help="trained tokenizer (default: <base>/tokenizer)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per batch (B)")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per row (T)")
    parser.add_argument("--batches", type=int, default=400, help="loader batches to time (for the drop share, enough that the buffer turns over many times)")
    parser.add_argument("--buffer-size", type=int, nargs="+", default=[1000],
                        help="documents in the best-fit buffer; several values are timed one after the other")
    parser.add_argument("--threads", type=int, default=2, help="tokenizer threads (and torch threads)")
    parser.add_argument("--train-steps", type=int, default=5, help="depth-4 training steps to time (0 = skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tok = Tokenizer.from_directory(args.tokenizer_dir or tokenizer_dir())
    source = choose_source(args.data)
    B, T = args.batch_size, args.seq_len
    for buffer_size in args.buffer_size:
        loader_tps, dropped = bench_loader(tok, source, B, T, args.batches, args.threads, buffer_size)
        print(f"loader:   {loader_tps:>10,.0f} tok/s  (B={B}, T={T}, {args.threads} threads, source {source}, "
              f"vocab {tok.get_vocab_size():,}, buffer {buffer_size:,} docs, dropped {dropped:.1%} of tokens)")
    if args.train_steps > 0:
        train_tps, dtype = bench_training(tok.get_vocab_size(), B, T, args.train_steps)
        print(f"training: {train_tps:>10,.0f} tok/s  (depth 4, {str(dtype).removeprefix('torch.')}, "
              f"{torch.get_num_threads()} threads)")
        print(f"ratio:    {loader_tps / train_tps:>10.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
