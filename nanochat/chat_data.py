"""
Conversations -> (inputs, targets) batches for the chat stages, resumable exactly.

    data = ChatData(tokenizer, mixture, T=512, supervise="all")        # renders every conversation once
    batches = data.batches(B=8, packed=True, resume_state=state)      # yields (inputs, targets, state) forever
    rows = data.plan(epoch=0, packed=True)                             # one pass: lists of conversation indices

Two layouts:
- packed (mid_train): rows of T+1 tokens like pretraining. Each row starts at a conversation's <|bos|>; the row is
  filled BOS-aligned best-fit from a window of the next `window` conversations (the longest one that still fits),
  and when none fits the rest of the row is padding. Conversations are never cut to fill a row: the answer at the
  end of a chat is the part worth learning.
- one conversation per row (chat_sft): rows padded to the longest conversation of the batch, so a batch of short
  chats costs little.

Targets are the next token where the loss should be and -1 elsewhere (padding always; with supervise="assistant"
also every token that render_conversation's mask marks 0: bos, user turns, forced tool outputs). A conversation
longer than T+1 tokens is truncated to T+1 and counted (`truncated`), never dropped.

The order of rows is a plan computed from the conversations' lengths alone, once per epoch (epoch e shuffles the
mixture order with seed + e), so the data position is just (epoch, row): a checkpoint saves it, and a resumed run
gets the very rows it would have had. Under torchrun rank r takes every world_size-th row.

Tests: pytest tests/test_chat_data.py -q
"""

import bisect
import random

import numpy as np
import torch
from tqdm import tqdm

from nanochat.common import UserError

IGNORE_INDEX = -1
STATE_VERSION = 1


class ChatData:
    """Every conversation of a task (or mixture) rendered once, plus the row plans built from them."""

    def __init__(self, tokenizer, task, T: int, supervise: str = "all", seed: int = 42, progress: bool = True):
        if supervise not in ("all", "assistant"):
            raise ValueError(f"supervise must be 'all' or 'assistant', not {supervise!r}")
        if len(task) == 0:
            raise UserError(f"{task!r} has no conversations to train on")
        self.T, self.row_len, self.supervise, self.seed = T, T + 1, supervise, seed
        self.pad = tokenizer.get_bos_token_id()      # any valid id: padded positions have target -1
        self.ids, self.train_mask = [], []
        self.truncated = 0
        for conversation in tqdm(task, total=len(task), desc=f"rendering {task.name}", unit="chat",
                                 disable=None if progress else True, leave=False):
            ids, mask = tokenizer.render_conversation(conversation, max_tokens=1 << 62)
            if len(ids) > self.row_len:
                self.truncated += 1
                ids, mask = ids[:self.row_len], mask[:self.row_len]
            self.ids.append(np.asarray(ids, dtype=np.int64))
            self.train_mask.append(np.asarray(mask, dtype=bool))
        self.lengths = [len(ids) for ids in self.ids]
        self._plans = {}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    # -------------------------------------------------------------------------
    # Row plans: which conversations go in which row

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.ids)))
        if epoch > 0:               # epoch 0 keeps the mixture's own (seeded) order
            random.Random(self.seed + epoch).shuffle(order)
        return order

    def plan(self, epoch: int, packed: bool, window: int = 64) -> list[list[int]]:
        """The rows of one epoch, each a list of conversation indices."""
        key = (epoch, packed, window)
        if key not in self._plans:
            order = self._order(epoch)
            self._plans = {key: pack_rows(order, self.lengths, self.row_len, window) if packed
                           else [[i] for i in order]}                 # keep one epoch's plan, not all of them
        return self._plans[key]

    # -------------------------------------------------------------------------
    # Batches

    def _row(self, members: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and targets (-1 = no loss) of one row of `length` + 1 tokens."""
        ids = np.full(length + 1, self.pad, dtype=np.int64)
        train = np.zeros(length + 1, dtype=bool)
        pos = 0
        for i in members:
            n = self.lengths[i]
            ids[pos:pos + n] = self.ids[i]
            train[pos:pos + n] = True if self.supervise == "all" else self.train_mask[i]
            pos += n
        targets = np.where(train[1:], ids[1:], IGNORE_INDEX)
        return ids[:-1], targets

    def batches(self, B: int, packed: bool, device="cpu", resume_state: dict | None = None, rank: int = 0,
                world_size: int = 1):
        """Yield (inputs, targets, state) forever; state = the position of the next batch (JSON-serialisable)."""
        state = {"version": STATE_VERSION, "T": self.T, "packed": packed, "epoch": 0, "row": 0}
        if resume_state is not None:
            mismatch = {k: (resume_state.get(k), state[k]) for k in ("version", "T", "packed")
                        if resume_state.get(k) != state[k]}
            if mismatch:
                raise UserError(f"the saved data position does not match this run ({mismatch}: saved, now): resume "
                                "with the same --max-seq-len as the checkpoint")
            state.update(epoch=resume_state["epoch"], row=resume_state["row"])
        epoch, row = state["epoch"], state["row"]
        per_batch = B * world_size
        while True:
            rows = self.plan(epoch, packed)
            if row + per_batch > len(rows):         # too few rows left for a whole batch: next epoch
                epoch, row = epoch + 1, 0
                if len(rows) < per_batch:
                    raise UserError(f"{len(rows)} rows of data cannot fill a batch of {B} x {world_size} "
                                    "process(es): lower --device-batch-size or add data")
                continue
            mine = rows[row + rank:row + per_batch:world_size]
            length = self.T if packed else max(sum(self.lengths[i] for i in m) for m in mine) - 1
            pairs = [self._row(m, length) for m in mine]
            inputs = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
            targets = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
            row += per_batch
            yield inputs, targets, {**state, "epoch": epoch, "row": row}


def pack_rows(order: list[int], lengths: list[int], row_len: int, window: int = 64) -> list[list[int]]:
    """BOS-aligned best-fit packing: fill each row with the longest waiting conversation that fits the room left,
    from a window of the next `window` conversations in `order` (the oldest of equal ones); start a new row when
    none fits. Every
    conversation is used once, whole (lengths are at most row_len)."""
    waiting_lengths, waiting = [], []       # sorted by length; equal lengths keep their order
    rows, current, room, nxt = [], [], row_len, 0

    def refill():
        nonlocal nxt
        while len(waiting) < window and nxt < len(order):
            i = order[nxt]
            at = bisect.bisect_right(waiting_lengths, lengths[i])
            waiting_lengths.insert(at, lengths[i])
            waiting.insert(at, i)
            nxt += 1

    refill()
    while waiting:
        at = bisect.bisect_right(waiting_lengths, room) - 1
        if at < 0:                          # nothing fits: this row is done (its rest is padding)
            rows.append(current)
            current, room = [], row_len
            continue
        at = bisect.bisect_left(waiting_lengths, waiting_lengths[at])    # the oldest of that length: none waits long
        room -= waiting_lengths.pop(at)
        current.append(waiting.pop(at))
        refill()
    if current:
        rows.append(current)
    return rows
