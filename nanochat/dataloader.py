"""
The pretraining data loader: documents -> tokens -> (inputs, targets) batches of shape (B, T), resumable exactly.

    loader = tokenizing_distributed_data_loader(tokenizer, B=8, T=512, split="train", source="auto")
    for inputs, targets, state in loader: ...          # state is JSON-serialisable: save it with a checkpoint
    loader = tokenizing_distributed_data_loader(..., resume_state=state)   # continues with the very next batch

How a batch is made:
- A background thread reads documents (nanochat.dataset.iter_documents), tokenizes them in batches with bos
  prepended, and queues them, so tokenization runs ahead of training.
- Each row holds T+1 tokens (inputs = row[:-1], targets = row[1:]) and starts with bos at a document start.
  BOS-aligned best-fit packing: from a buffer of ~1000 tokenized documents, put in the row the longest document
  that still fits; when none fits, crop the shortest one to fill the row and drop its rest. Documents longer than
  a row are cut to T+1 tokens when they enter the buffer (the rest could never be used).
- The loader counts the tokens it drops: `state["tokens_dropped"] / (state["tokens_used"] + ...)`, see drop_share().
  On the offline data at T=512 it drops 21.7% (9.1 points are tails of documents longer than a row); a 4x larger
  buffer saves 0.4 points, so it stays at 1000. nanochat reports ~35% on FineWeb-EDU at T=2048.

The state names the read head (file position of the next document to read, epoch) and the position of every
document waiting in the buffer; resuming re-reads those documents, so no token is lost or repeated.
With several processes (torchrun on GPUs), rank r takes every world_size-th document.

Benchmark: python -m dev.bench_dataloader
"""

import bisect
import os
import queue
import threading

import numpy as np
import torch

from nanochat.common import UserError
from nanochat.dataset import choose_source, iter_documents, read_documents, resolve_files

STATE_VERSION = 1


def drop_share(state: dict) -> float:
    """Share of the tokens read that the loader had to drop (cropped document tails)."""
    total = state["tokens_used"] + state["tokens_dropped"]
    return state["tokens_dropped"] / total if total else 0.0


class _Buffer:
    """Tokenized documents kept sorted by length, so the best fit for a gap is one bisect away."""

    def __init__(self):
        self.lengths, self.docs = [], []  # docs[i] = (pos, tokens); lengths[i] = len(tokens), ascending

    def __len__(self):
        return len(self.docs)

    def add(self, pos, tokens):
        i = bisect.bisect_right(self.lengths, len(tokens))  # after equal lengths: insertion order is kept
        self.lengths.insert(i, len(tokens))
        self.docs.insert(i, (pos, tokens))

    def pop_best_fit(self, room: int):
        """The longest document of at most `room` tokens, else the shortest one (to be cropped)."""
        i = bisect.bisect_right(self.lengths, room) - 1
        i = max(i, 0)
        self.lengths.pop(i)
        return self.docs.pop(i)

    def positions(self):
        return [pos for pos, _ in self.docs]


class _Producer(threading.Thread):
    """Reads and tokenizes documents ahead of the consumer; puts (docs, head) chunks on a bounded queue, where
    docs = [(pos, tokens)] and head = the stream position right after the chunk."""

    def __init__(self, tokenizer, files, head, rank, world_size, batch_docs, threads, prefetch, label):
        super().__init__(daemon=True)
        self.tokenizer, self.files, self.head = tokenizer, files, dict(head)
        self.rank, self.world_size, self.batch_docs, self.threads, self.label = rank, world_size, batch_docs, threads, label
        self.queue = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()

    def put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run(self):
        try:
            self._run()
        except BaseException as e:  # hand the error to the consumer, which raises it in the training loop
            self.put(e)

    def _run(self):
        bos = self.tokenizer.get_bos_token_id()
        head = self.head
        while True:
            positions, texts, found = [], [], False
            whole_pass = head["next"] == [0, 0, 0]  # a pass from the start that finds nothing will never find any
            for pos, nxt, text in iter_documents(start=head["next"], files=self.files):
                mine = head["doc_index"] % self.world_size == self.rank
                head = {"epoch": head["epoch"], "next": nxt, "doc_index": head["doc_index"] + 1}
                if mine:
                    found = True
                    positions.append(pos)
                    texts.append(text)
                if len(texts) == self.batch_docs:
                    if not self.emit(positions, texts, head, bos):
                        return
                    positions, texts = [], []
            if texts and not self.emit(positions, texts, head, bos):
                return
            if not found and whole_pass:
                mine = f" for rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
                raise UserError(f"the {self.label} has no documents{mine}: nothing to train on. Check the data source.")
            head = {"epoch": head["epoch"] + 1, "next": [0, 0, 0], "doc_index": 0}  # next epoch

    def emit(self, positions, texts, head, bos) -> bool:
        ids = self.tokenizer.encode(texts, prepend=bos, num_threads=self.threads)
        return self.put((list(zip(positions, ids)), head))


def tokenizing_distributed_data_loader(tokenizer, B: int, T: int, split: str, source: str = "auto", device="cpu",
                                       resume_state: dict | None = None, buffer_size: int = 1000,
                                       tokenizer_threads: int = 2, tokenizer_batch_size: int = 128,
                                       prefetch: int = 16):
    """Yield (inputs, targets, state) forever: inputs/targets are (B, T) int64 on `device`; state resumes exactly."""
    if B < 1 or T < 1:
        raise ValueError(f"B and T must be positive (got B={B}, T={T})")
    source = choose_source(source)
    files = resolve_files(source, split)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    row_len = T + 1
    state = {"version": STATE_VERSION, "split": split, "T": T, "epoch": 0, "next": [0, 0, 0], "doc_index": 0,
             "buffer": [], "tokens_used": 0, "tokens_dropped": 0}
    if resume_state is not None:
        if resume_state.get("version") != STATE_VERSION or resume_state.get("split") != split or resume_state.get("T") != T:
            raise ValueError(f"loader state (split={resume_state.get('split')}, T={resume_state.get('T')}) does not "
                             f"match this loader (split={split}, T={T}): resume with the same --max-seq-len and split")
        state.update({k: resume_state[k] for k in state if k in resume_state})

    buffer = _Buffer()
    bos = tokenizer.get_bos_token_id()
    if state["buffer"]:  # re-read and re-tokenize the documents that were waiting in the buffer
        texts = read_documents(files, state["buffer"])
        for pos, ids in zip(state["buffer"], tokenizer.encode(texts, prepend=bos, num_threads=tokenizer_threads)):
            buffer.add(list(pos), ids[:row_len])  # their tails were counted as dropped when first read
    producer = _Producer(tokenizer, files, {k: state[k] for k in ("epoch", "next", "doc_index")},
                         rank, world_size, tokenizer_batch_size, tokenizer_threads, prefetch, f"{split} split of {source}")
    producer.start()
    counts = {"used": state["tokens_used"], "dropped": state["tokens_dropped"]}
    head = {k: state[k] for k in ("epoch", "next", "doc_index")}

    def refill():
        nonlocal head
        while len(buffer) < buffer_size:
            item = producer.queue.get()
            if isinstance(item, BaseException):
                raise item
            docs, head = item
            for pos, ids in docs:
                if len(ids) > row_len:
                    counts["dropped"] += len(ids) - row_len
                    ids = ids[:row_len]
                buffer.add(pos, ids)

    use_cuda = torch.device(device).type == "cuda"
    try:
        while True:
            rows = np.empty((B, row_len), dtype=np.int64)
            for r in range(B):
                filled = 0
                while filled < row_len:
                    refill()
                    _, ids = buffer.pop_best_fit(row_len - filled)
                    take = min(len(ids), row_len - filled)
                    rows[r, filled:filled + take] = ids[:take]
                    counts["dropped"] += len(ids) - take
                    filled += take
            counts["used"] += B * row_len
            batch = torch.from_numpy(rows)
            inputs, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
            if use_cuda:
                inputs, targets = inputs.pin_memory(), targets.pin_memory()
            inputs = inputs.to(device, non_blocking=use_cuda)
            targets = targets.to(device, non_blocking=use_cuda)
            state = {"version": STATE_VERSION, "split": split, "T": T, **head, "buffer": buffer.positions(),
                     "tokens_used": counts["used"], "tokens_dropped": counts["dropped"]}
            yield inputs, targets, state
    finally:
        # Wait for the producer to leave pyarrow/tiktoken: a daemon thread still inside native code when the
        # interpreter exits aborts the process ("terminate called without an active exception").
        producer.stop.set()
        producer.join(timeout=30)
