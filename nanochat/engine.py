"""
Inference: a preallocated KV cache, token sampling, the calculator tool, and the Engine that ties them together.

Used by chat_cli, chat_web, chat_eval and chat_rl; nothing here is run directly. In code:

    engine = Engine(model, tokenizer)
    for token_column, token_masks in engine.generate(prompt_ids, num_samples=1, max_tokens=64, temperature=0.0):
        ...                                   # one token per sample per step; mask 0 = forced by the tool
    results, masks = engine.generate_batch(prompt_ids, num_samples=4, max_tokens=64, temperature=1.0, seed=0)

How a request runs: the prompt is fed once at batch 1 (prefill); its keys/values are written into every row of a
cache preallocated for num_samples rows and prompt + max_tokens positions; then one token per step is decoded for all
rows. Rows stop at <|assistant_end|> or <|bos|>, at max_tokens, or when the model's context is full.

Tool use: text the model writes between <|python_start|> and <|python_end|> goes to `calculator`, a small parser that
evaluates arithmetic and "string".count("s") and nothing else; its result is forced in as
<|output_start|>result<|output_end|> (mask 0: the model did not choose those tokens).
"""

import ast
import codecs
import math
import os
import re
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

# -----------------------------------------------------------------------------
# Calculator: parse with `ast`, walk an allow-list, check sizes BEFORE computing anything big.

CALC_MAX_CHARS = 256           # longer tool calls are rejected unparsed
CALC_MAX_DEPTH = 32            # nesting depth of the expression tree
CALC_MAX_INT_BITS = 256        # ints beyond ~77 decimal digits are "huge" (inputs, intermediates, results)


class CalculatorError(ValueError):
    """The expression is outside the calculator's grammar or its size limits."""


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _check_number(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise CalculatorError(f"result {x!r} is not a real number")
    if isinstance(x, int) and x.bit_length() > CALC_MAX_INT_BITS:
        raise CalculatorError(f"number too large (over {CALC_MAX_INT_BITS} bits)")
    if isinstance(x, float) and not math.isfinite(x):
        raise CalculatorError("result is not finite")
    return x


def _power(base, exp):
    """base ** exp, refused (not computed) when the result would be huge."""
    if base == 0 and exp < 0:
        raise CalculatorError("zero to a negative power")
    if isinstance(base, float) or isinstance(exp, float):
        if base < 0 and not float(exp).is_integer():
            raise CalculatorError("a negative number to a fractional power is not real")
        if abs(base) > 1 and abs(exp) * math.log2(abs(base)) > 1023:  # would overflow a float
            raise CalculatorError("power too large")
        try:
            return float(base) ** float(exp)
        except (OverflowError, ZeroDivisionError) as e:
            raise CalculatorError(f"power failed: {e}") from None
    # int ** int: the result has about exp * bit_length(base) bits; check that first.
    if exp < 0:
        return _power(float(base), float(exp))
    if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > CALC_MAX_INT_BITS:
        raise CalculatorError(f"power too large (over {CALC_MAX_INT_BITS} bits)")
    return base ** exp


def _binop(op, a, b):
    if isinstance(op, ast.Pow):
        return _power(a, b)
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b  # both operands already < 2**256, so the product is < 2**512 before the result check
    if b == 0:
        raise CalculatorError("division by zero")
    if isinstance(op, ast.Div):
        return a / b
    if isinstance(op, ast.FloorDiv):
        return a // b
    return a % b


def _eval(node, depth=0):
    if depth > CALC_MAX_DEPTH:
        raise CalculatorError(f"expression nested deeper than {CALC_MAX_DEPTH}")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return _check_number(node.value)
        raise CalculatorError(f"constant {node.value!r} is not allowed (only numbers, and strings with .count)")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        return _check_number(_binop(node.op, a, b))
    if isinstance(node, ast.Call):
        return _count(node)
    if isinstance(node, ast.Name):
        raise CalculatorError(f"name {node.id!r} is not allowed")
    if isinstance(node, ast.Attribute):
        raise CalculatorError(f"attribute .{node.attr} is not allowed (only \"text\".count(\"x\"))")
    raise CalculatorError(f"{type(node).__name__} is not allowed")


def _count(node: ast.Call) -> int:
    """The one allowed call: "string literal".count("string literal")."""
    func = node.func
    ok = (isinstance(func, ast.Attribute) and func.attr == "count"
          and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)
          and len(node.args) == 1 and not node.keywords
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))
    if not ok:
        raise CalculatorError('calls are not allowed, except "text".count("x") on string literals')
    return func.value.value.count(node.args[0].value)   # strings are short: CALC_MAX_CHARS bounds them


def format_number(x) -> str:
    """Ints as they are; whole floats without '.0' (48/2 -> '24'); other floats rounded to 10 places."""
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return repr(round(x, 10))
    return str(x)


def calculator(expr: str) -> str:
    """Evaluate a calculator tool call and return its result as text, or raise CalculatorError saying why not.

    Grammar: numbers, + - * / // % ** (size-guarded), unary + -, parentheses, "string".count("s").
    Nothing outside it is ever evaluated: the expression is parsed, never passed to eval().
    Thousands separators between digits ("1,234") are removed first.
    """
    if not isinstance(expr, str):
        raise CalculatorError("expression must be a string")
    if len(expr) > CALC_MAX_CHARS:
        raise CalculatorError(f"expression longer than {CALC_MAX_CHARS} characters")
    expr = re.sub(r"(?<=\d),(?=\d{3}\b)", "", expr.strip())
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"cannot parse: {e.__class__.__name__}") from None
    return format_number(_eval(tree))


def use_calculator(expr: str) -> str | None:
    """calculator() for the engine: None when the expression is refused (then nothing is forced in)."""
    try:
        return calculator(expr)
    except CalculatorError:
        return None


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
    current position and views of everything cached so far are returned. The position advances after the last
    layer's insert. A batch-1 insert into a batch-N cache fills every row (prefill once, then sample N times).
    The buffers are allocated at the first insert, with that insert's head count, head size and dtype.
    """

    def __init__(self, batch_size: int, seq_len: int, num_layers: int):
        self.batch_size, self.seq_len, self.num_layers = batch_size, seq_len, num_layers
        self.k = self.v = None
        self.pos = 0

    def _allocate(self, num_kv_heads, head_dim, device, dtype):
        # One spare position: a view that ends exactly at the buffer's end is contiguous, a shorter one is not,
        # and torch.compile would treat that last step as a new case and compile again.
        shape = (self.num_layers, self.batch_size, num_kv_heads, self.seq_len + 1, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

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
        # A batch-1 write broadcasts into all rows; attention then reads row 0 only (all rows are equal).
        self.k[layer_idx, :, :, start:end] = k
        self.v[layer_idx, :, :, start:end] = v
        if layer_idx == self.num_layers - 1:
            self.pos = end
        return self.k[layer_idx, :B, :, :end], self.v[layer_idx, :B, :, :end]


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
        # there (dev/bench_infer.py) but slower and erratic at batch 8; prefill (a new shape each time) stays eager.
        # dynamic=True: the cache length grows every step and must not trigger a compile per length.
        self.decode_model = torch.compile(model, dynamic=True) if compile else model
        self.tokenizer = tokenizer
        self.autocast = autocast if autocast is not None else nullcontext()  # e.g. common.autocast_ctx(device, dtype)
        self.device = model.get_device()
        self.context_len = model.config.sequence_len
        sp = tokenizer.encode_special
        self.bos, self.assistant_end = sp("<|bos|>"), sp("<|assistant_end|>")
        self.python_start, self.python_end = sp("<|python_start|>"), sp("<|python_end|>")
        self.output_start, self.output_end = sp("<|output_start|>"), sp("<|output_end|>")
        self.stop_tokens = {self.bos, self.assistant_end}

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

        A sample is finished once it has yielded <|assistant_end|> or <|bos|>; its later entries are padding and
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
        cache = KVCache(num_samples, len(tokens) + max_tokens, self.model.config.n_layer)

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
# Faster CPU inference: int8 weights

class Int8Linear(torch.nn.Module):
    """A bias-free Linear with int8 weights (one scale per output row, max |w| / 127) for inference.

    On CPU it runs torch's weight-only int8 kernel, which reads 4x fewer weight bytes than fp32: at batch 1 the
    matmuls of a small model are bound by reading weights, not by arithmetic.
    """

    def __init__(self, linear: torch.nn.Linear, act_dtype: torch.dtype):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free linears only")
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(act_dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.act_dtype = act_dtype

    def forward(self, x):
        x2 = x.reshape(-1, self.in_features).to(self.act_dtype)
        if x2.device.type == "cpu":
            y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scale)
        else:
            y = torch.nn.functional.linear(x2, self.weight_int8.to(self.act_dtype)) * self.scale
        return y.view(*x.shape[:-1], self.out_features)


def quantize_int8(model, act_dtype: torch.dtype = torch.bfloat16):
    """In place: every nn.Linear becomes an Int8Linear, the rest of the model (embedding, rotary tables) is cast to
    act_dtype, so the forward runs in act_dtype on int8 weights. For inference only (there are no gradients)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8Linear(child, act_dtype))
    for p in model.parameters():
        p.data = p.data.to(act_dtype)
    for name, buf in model.named_buffers():
        if buf.is_floating_point() and not name.endswith("scale"):
            buf.data = buf.data.to(act_dtype)
    return model


# -----------------------------------------------------------------------------
# Loading a chat model with the inference options (shared by chat_cli and chat_web)

SOURCES_BEST_FIRST = ("rl", "sft", "mid", "base")


def best_source() -> str:
    """The most trained stage that has a checkpoint: rl, then sft, mid, base."""
    from nanochat.checkpoint_manager import STAGE_DIRS
    from nanochat.common import UserError, get_base_dir
    for source in SOURCES_BEST_FIRST:
        stage_dir = os.path.join(get_base_dir(), STAGE_DIRS[source])
        if os.path.isdir(stage_dir) and os.listdir(stage_dir):
            return source
    raise UserError(f"no checkpoints under {get_base_dir()}: train a model first "
                    "(e.g. `bash train_cpu.sh`, or `python -m scripts.base_train --depth 4`)")


def load_engine(source: str | None, model_tag: str | None, step: int | None, device, dtype: str = "float32",
                quantize: str = "auto", compile: bool = False, threads: int | None = None) -> tuple[Engine, str]:
    """Load a checkpoint (best available stage unless `source` is given) and wrap it in an Engine.

    dtype "float32" or "bfloat16" (weights and activations); quantize "int8" stores the linears' weights as int8
    (activations in bf16 on CPUs with native bf16, else fp32), "auto" = int8 on CPUs with native bf16, where torch's
    int8 kernel is fast (dev/bench_infer.py: depth 6 decodes 1.3-2.5x faster than fp32, depth 4 about as fast; with the
    compiled decode step int8 is the fastest at both), else none.
    threads: torch threads on a CPU (None = leave as set). Decoding one token is a chain of tiny ops: extra threads
    mostly wait for each other, and spinning OpenMP threads collapse when other processes use the cores
    (dev/bench_infer.py), so the chat scripts default to 1.
    Returns (engine, "sft d4 step 700, int8 ..." style name).
    """
    from nanochat.checkpoint_manager import load_model
    from nanochat.common import compute_dtype
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
