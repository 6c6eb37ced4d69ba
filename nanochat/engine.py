"""
Inference: a preallocated KV cache, token sampling, text streaming, and the Engine that ties them together with
the calculator tool (nanochat/calculator.py); load_engine loads a checkpoint into an Engine.

Used through load_engine by the chat scripts (chat_cli, chat_web) and the evaluations (chat_eval, base_eval);
nothing here is run directly. In code:

    engine = Engine(model, tokenizer)
    for token_column, token_masks in engine.generate(prompt_ids, num_samples=1, max_tokens=64, temperature=0.0):
        ...                                   # one token per sample per step; mask 0 = forced by the tool
    results, masks = engine.generate_batch(prompt_ids, num_samples=4, max_tokens=64, temperature=1.0, seed=0)

How a request runs: the prompt is fed once at batch 1 (prefill); its keys/values are written into every row of a
cache preallocated for num_samples rows and prompt + max_tokens positions; then one token per step is decoded for all
rows. Rows stop at <|assistant_end|> or <|bos|> (or a token of another turn), at max_tokens, or when the model's
context is full.

Tool use: text the model writes between <|python_start|> and <|python_end|> goes to the calculator, a small parser
that evaluates arithmetic and "string".count("s") and nothing else; its result is forced in as
<|output_start|>result<|output_end|> (mask 0: the model did not choose those tokens).
"""

import codecs
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from nanochat.calculator import use_calculator
from nanochat.checkpoint_manager import best_source, load_model
from nanochat.common import compute_dtype
from nanochat.quantize import quantize_int8

# -----------------------------------------------------------------------------
# Sampling

@torch.inference_mode()
def sample_next_token(logits: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B, 1) long.

    temperature 0 is greedy (argmax; the generator is not used). Otherwise logits/temperature, keep the top_k most
    likely and/or the smallest set whose probability reaches top_p, and draw from what is left with `generator`.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    # Shift the max to 0 and floor the temperature (1e-300 is 0 in fp32): a tiny temperature then gives huge
    # negative logits to all but the best token, never inf - inf = nan.
    logits = logits.float()
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / max(temperature, 1e-6)
    vocab = logits.size(-1)
    if top_k is not None and 0 < top_k < vocab:
        values, indices = torch.topk(logits, top_k, dim=-1)  # sorted, descending
    else:
        values, indices = torch.sort(logits, dim=-1, descending=True) if top_p is not None else (logits, None)
    if top_p is not None and 0.0 < top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first token always stays.
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop[..., 0] = False    # explicit: a top_p below fp32 resolution would otherwise drop everything
        values = values.masked_fill(drop, float("-inf"))
    probs = torch.softmax(values, dim=-1)
    choice = torch.multinomial(probs, num_samples=1, generator=generator)
    return choice if indices is None else indices.gather(-1, choice)


# -----------------------------------------------------------------------------
# KV cache

class KVCache:
    """Keys and values of every layer for `batch_size` rows and up to `seq_len` positions, allocated once.

    The model's attention layer i calls `k, v = cache.insert_kv(i, k, v)`: the new keys/values are written at the
    current position and views of the keys it attends to are returned. The position advances after the last
    layer's insert. A batch-1 insert into a batch-N cache fills every row (prefill once, then sample N times).
    The buffers are allocated at the first insert, with that insert's head count, head size and dtype.

    windows[i] > 0 (a sliding-window layer): that layer keeps only its last windows[i] positions, in a ring, so its
    memory stops growing at the window. It returns the ring (in ring order: a single new token attends to all of it,
    and attention does not depend on the keys' order), or for several new tokens the cached keys inside their
    window followed by the new ones, in order, for the layer's mask.
    """

    def __init__(self, batch_size: int, seq_len: int, num_layers: int, windows: list[int] | None = None):
        self.batch_size, self.seq_len, self.num_layers = batch_size, seq_len, num_layers
        self.windows = list(windows) if windows else [0] * num_layers
        if len(self.windows) != num_layers:
            raise ValueError(f"{len(self.windows)} windows for {num_layers} layers")
        self.k = self.v = None
        self.pos = 0

    def _allocate(self, num_kv_heads, head_dim, device, dtype):
        # One spare position in a full layer: a view that ends exactly at the buffer's end is contiguous, a shorter
        # one is not, and torch.compile would treat that last step as a new case and compile again.
        def buffer(window):
            length = min(window, self.seq_len) if window else self.seq_len + 1
            return torch.zeros(self.batch_size, num_kv_heads, length, head_dim, device=device, dtype=dtype)
        self.k = [buffer(w) for w in self.windows]
        self.v = [buffer(w) for w in self.windows]

    def get_pos(self) -> int:
        return self.pos

    def insert_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        B, H, T, D = k.shape
        if self.k is None:
            self._allocate(H, D, k.device, k.dtype)
        start, end = self.pos, self.pos + T
        if end > self.seq_len:
            raise RuntimeError(f"KV cache full: {end} positions needed, {self.seq_len} allocated")
        if B != 1 and B != self.batch_size:
            raise ValueError(f"KV cache has {self.batch_size} rows; got a batch of {B}")
        if layer_idx == self.num_layers - 1:
            self.pos = end
        # A batch-1 write broadcasts into all rows; attention then reads row 0 only (all rows are equal).
        ck, cv, window = self.k[layer_idx], self.v[layer_idx], self.windows[layer_idx]
        if not window:
            ck[:, :, start:end] = k
            cv[:, :, start:end] = v
            return ck[:B, :, :end], cv[:B, :, :end]
        W = ck.size(2)
        if T == 1:
            ck[:, :, start % W:start % W + 1] = k
            cv[:, :, start % W:start % W + 1] = v
            return ck[:B, :, :min(end, W)], cv[:B, :, :min(end, W)]
        # Several new tokens: the cached positions the first of them can still see, oldest first, then the new.
        seen = torch.arange(max(0, start - W + 1), start, device=k.device) % W
        keys, values = torch.cat([ck[:B, :, seen], k], dim=2), torch.cat([cv[:B, :, seen], v], dim=2)
        kept = torch.arange(max(start, end - W), end, device=k.device)
        ck[:, :, kept % W] = k[:, :, kept - start]
        cv[:, :, kept % W] = v[:, :, kept - start]
        return keys, values


# -----------------------------------------------------------------------------
# Text streaming and prompt fitting

class TextStreamer:
    """Turns token ids into text pieces as they arrive without ever splitting a multi-byte UTF-8 character:
    a token may end halfway through a character, so its trailing bytes wait for the next token."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self.decoder.decode(self.tokenizer.decode_bytes([token]))

    def flush(self) -> str:
        """Whatever bytes are still waiting (an incomplete character becomes U+FFFD)."""
        return self.decoder.decode(b"", final=True)


def fit_conversation(tokenizer, conversation: dict, max_prompt_tokens: int) -> tuple[list[int], int]:
    """Prompt ids for the assistant's next reply, at most max_prompt_tokens long.

    Oldest user/assistant turns are dropped first (a leading system message is kept); if the last user message alone
    is still too long, its beginning is cut. Returns (ids, number of messages dropped).
    """
    if max_prompt_tokens < 8:
        raise ValueError(f"max_prompt_tokens={max_prompt_tokens} leaves no room for a prompt")
    messages = list(conversation["messages"])
    if messages and messages[-1].get("role") == "assistant":
        messages.pop()
    first = 1 if messages and messages[0].get("role") == "system" else 0
    pairs = max(0, (len(messages) - first - 1) // 2)   # user + assistant pairs before the last user message
    rendered = {}

    def render(k):   # the prompt with the oldest k pairs dropped
        if k not in rendered:
            rendered[k] = tokenizer.render_for_completion({"messages": messages[:first] + messages[first + 2 * k:]})
        return rendered[k]

    # The prompt shrinks as more pairs are dropped: binary-search the fewest drops that fit. A server request may
    # carry hundreds of messages, and dropping one pair at a time re-rendered the whole chat hundreds of times.
    if len(render(0)) <= max_prompt_tokens:
        return render(0), 0                           # the usual case: everything fits, one render
    lo, hi = min(1, pairs), pairs
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if len(render(mid)) <= max_prompt_tokens else (mid + 1, hi)
    ids = render(lo)
    if len(ids) <= max_prompt_tokens:
        return ids, 2 * lo
    # One user message (plus system) that does not fit: keep the end of it, where the question usually is.
    # Layout: bos, user_start, content..., user_end, assistant_start.
    keep = max_prompt_tokens - 4
    content = ids[2:-2][-keep:]
    return ids[:2] + content + ids[-2:], 2 * lo


# -----------------------------------------------------------------------------
# The engine

@dataclass
class _Row:
    """Per-sample state while decoding: finished or not, and the calculator tool's bookkeeping."""
    done: bool = False
    in_python: bool = False
    python_tokens: list = field(default_factory=list)
    forced: deque = field(default_factory=deque)


class Engine:
    """Generates from a GPT with a KV cache. `model(idx, kv_cache=cache)` must follow the contract of KVCache."""

    def __init__(self, model, tokenizer, autocast=None, compile: bool = False):
        self.model = model
        # torch.compile fuses the decode step's many small ops. Only batch-1 decoding uses it: it measured faster
        # there but slower at batch 8 (README.md); prefill (a new shape each time) stays eager.
        # dynamic=True: the cache length grows every step and must not trigger a compile per length.
        # cpp_wrapper: the compiled step's kernels are called from C++, not Python; a step of a small model is
        # mostly that calling overhead (1.03-1.35x faster at batch 1, README.md).
        self.decode_model = torch.compile(model, dynamic=True, options={"cpp_wrapper": True}) if compile else model
        self.tokenizer = tokenizer
        self.autocast = autocast if autocast is not None else nullcontext()  # e.g. common.autocast_ctx(device, dtype)
        self.device = model.get_device()
        self.context_len = model.config.sequence_len
        sp = tokenizer.encode_special
        self.bos, self.assistant_end = sp("<|bos|>"), sp("<|assistant_end|>")
        self.python_start, self.python_end = sp("<|python_start|>"), sp("<|python_end|>")
        self.output_start, self.output_end = sp("<|output_start|>"), sp("<|output_end|>")
        # the reply ends at its own end, and at any token that belongs to another turn: a model that writes
        # <|user_end|><|assistant_start|> is inventing the next turn, which must never show as reply text
        self.stop_tokens = {self.bos, self.assistant_end, *map(sp, ("<|user_start|>", "<|user_end|>",
                                                                    "<|assistant_start|>"))}

    def _forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits of the last position, (B, V)."""
        model = self.decode_model if ids.shape == (1, 1) else self.model
        with self.autocast:
            return model(ids, kv_cache=cache)[:, -1, :]

    def _check_prompt(self, tokens) -> list[int]:
        if not isinstance(tokens, (list, tuple)) or not tokens or not all(isinstance(t, int) for t in tokens):
            raise ValueError("the prompt must be a non-empty list of token ids (ints)")
        vocab = self.model.config.vocab_size
        if min(tokens) < 0 or max(tokens) >= vocab:
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        if len(tokens) >= self.context_len:
            raise ValueError(f"the prompt has {len(tokens)} tokens but the model's context is {self.context_len}: "
                             "shorten it (fit_conversation drops the oldest turns)")
        return list(tokens)

    def fit_prompt(self, messages: list[dict], max_tokens: int) -> tuple[list[int], int, int]:
        """Prompt ids for the assistant's reply to `messages`, leaving room for up to max_tokens of reply (but at least
        half the context for the prompt). Returns (ids, max_tokens that fit after them, messages dropped)."""
        reply_room = min(max_tokens, self.context_len // 2)
        ids, dropped = fit_conversation(self.tokenizer, {"messages": messages}, self.context_len - reply_room)
        return ids, min(max_tokens, self.context_len - len(ids)), dropped

    @torch.inference_mode()
    def generate(self, tokens, num_samples: int = 1, max_tokens: int | None = None, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 42):
        """Yield (token_column, token_masks) once per step: one token per sample, mask 1 if sampled, 0 if forced.

        A sample is finished once it has yielded a stop token (<|assistant_end|>, <|bos|>, or a token that starts or
        ends another turn: <|user_start|>, <|user_end|>, <|assistant_start|>); its later entries are padding and
        must be ignored. Generation ends when all samples are finished, after max_tokens steps, or when the model's
        context (prompt + generated) is full. Same seed -> same tokens; temperature 0 is greedy and ignores the seed.
        """
        tokens = self._check_prompt(tokens)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        budget = self.context_len - len(tokens)
        max_tokens = budget if max_tokens is None else min(max_tokens, budget)
        if max_tokens <= 0:
            return
        generator = torch.Generator(device=self.device).manual_seed(seed)
        config = self.model.config
        cache = KVCache(num_samples, len(tokens) + max_tokens, config.n_layer,
                        [config.layer_window(i) for i in range(config.n_layer)])

        # Prefill once at batch 1: the cache copies its keys/values into every row.
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        logits = self._forward(ids, cache).expand(num_samples, -1)
        rows = [_Row() for _ in range(num_samples)]
        for step in range(max_tokens):
            sampled = sample_next_token(logits, generator, temperature, top_k, top_p)[:, 0].tolist()
            column, masks = [], []
            for row, token in zip(rows, sampled):
                forced = bool(row.forced)
                token = row.forced.popleft() if forced else token
                column.append(token)
                masks.append(0 if forced else 1)
                self._observe(row, token)
            yield column, masks
            if all(row.done for row in rows) or step == max_tokens - 1:
                return
            ids = torch.tensor(column, dtype=torch.long, device=self.device).view(num_samples, 1)
            logits = self._forward(ids, cache)

    def _observe(self, row: _Row, token: int):
        """Track stops and tool calls; queue the calculator's answer when a tool call closes."""
        if row.done:
            return
        if token in self.stop_tokens:
            row.done = True
        elif token == self.python_start:
            row.in_python, row.python_tokens = True, []
        elif token == self.python_end and row.in_python:
            row.in_python = False
            result = use_calculator(self.tokenizer.decode(row.python_tokens))
            if result is not None:
                row.forced.extend([self.output_start, *self.tokenizer.encode(result), self.output_end])
        elif row.in_python:
            row.python_tokens.append(token)

    def generate_batch(self, tokens, num_samples: int = 1, **kwargs):
        """Run generate() to the end. Returns (results, masks): per sample, the prompt plus its generated tokens
        (the stop token excluded), and a mask that is 0 on the prompt and on forced tool output."""
        results = [list(tokens) for _ in range(num_samples)]
        masks = [[0] * len(tokens) for _ in range(num_samples)]
        done = [False] * num_samples
        for column, column_masks in self.generate(tokens, num_samples, **kwargs):
            for i, (token, mask) in enumerate(zip(column, column_masks)):
                if done[i]:
                    continue
                if token in self.stop_tokens:
                    done[i] = True
                else:
                    results[i].append(token)
                    masks[i].append(mask)
        return results, masks

    def stream(self, tokens, **kwargs) -> "ReplyStream":
        """One sample as text pieces: `for piece in engine.stream(ids, max_tokens=..)`; see ReplyStream."""
        return ReplyStream(self, tokens, **kwargs)


class ReplyStream:
    """Iterate to get text pieces of one reply as they are generated (UTF-8 safe; stop tokens are not text).
    Afterwards, finish_reason is "stop" (the model ended its turn) or "length" (max_tokens / context reached) and
    completion_tokens counts the generated tokens. Stopping the iteration early stops generation."""

    def __init__(self, engine: Engine, tokens, **kwargs):
        tokens = engine._check_prompt(tokens)
        self.engine, self.prompt_tokens = engine, len(tokens)
        self.completion_tokens = 0
        self.finish_reason = None
        self._steps = engine.generate(tokens, num_samples=1, **kwargs)

    def __iter__(self):
        streamer = TextStreamer(self.engine.tokenizer)
        self.finish_reason = "length"
        for column, _ in self._steps:
            token = column[0]
            self.completion_tokens += 1
            if token in self.engine.stop_tokens:
                self.finish_reason = "stop"
                break
            piece = streamer.push(token)
            if piece:
                yield piece
        tail = streamer.flush()
        if tail:
            yield tail

    def close(self):
        self._steps.close()


# -----------------------------------------------------------------------------
# Loading a chat model with the inference options (shared by chat_cli and chat_web)

def load_engine(source: str | None, model_tag: str | None, step: int | None, device, dtype: str = "float32",
                quantize: str = "auto", compile: bool = False, threads: int | None = None) -> tuple[Engine, str]:
    """Load a checkpoint (best available stage unless `source` is given) and wrap it in an Engine.

    dtype "float32" or "bfloat16" (weights and activations); quantize "int8" stores the linears' weights as int8
    (nanochat/quantize.py; activations in bf16 on CPUs with native bf16, else fp32), "auto" = int8 on CPUs with
    native bf16, where torch's int8 kernel is fast, else none (README.md has the measured speeds).
    threads: torch threads on a CPU (None = leave as set). Decoding one token is a chain of tiny ops: extra threads
    mostly wait for each other, and spinning OpenMP threads collapse when other processes use the cores
    (README.md, dev/bench_infer.py), so the chat scripts default to 1.
    Returns (engine, "sft d4 step 700, int8 ..." style name).
    """
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    if quantize == "auto":
        fast_int8 = device.type == "cpu" and compute_dtype(device) == torch.bfloat16 and dtype == "float32"
        quantize = "int8" if fast_int8 else "none"
    source = source or best_source()
    model, tokenizer, meta = load_model(source, device, phase="eval", model_tag=model_tag, step=step)
    options = []
    if quantize == "int8":
        act = compute_dtype(device) if dtype == "float32" else getattr(torch, dtype)
        quantize_int8(model, act)
        options.append(f"int8 weights, {str(act).removeprefix('torch.')} activations")
    elif quantize != "none":
        raise ValueError(f"quantize must be 'auto', 'none' or 'int8', not {quantize!r}")
    elif dtype != "float32":
        model.to(getattr(torch, dtype))
        options.append(dtype)
    if compile:
        options.append("compiled")
    depth = model.config.n_layer
    name = f"{source} d{depth} step {meta.get('step', '?')}" + (f", {', '.join(options)}" if options else "")
    return Engine(model, tokenizer, compile=compile), name


def load_engine_from_args(args, device) -> tuple[Engine, str]:
    """load_engine with the flags of cli.add_checkpoint_args and cli.add_inference_args."""
    if args.backend != "torch":
        from nanochat.export import load_exported_engine
        return load_exported_engine(args.source, args.model_tag, args.step, args.backend, args.threads)
    return load_engine(args.source, args.model_tag, args.step, device, args.dtype, args.quantize, args.compile,
                       threads=args.threads)
