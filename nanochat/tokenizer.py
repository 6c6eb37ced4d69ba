"""
The tokenizer: byte-level BPE trained by rustbpe (Rust), run by tiktoken (fast encoding), plus chat rendering.

Train one with `python -m scripts.tok_train`; it is saved under <base>/tokenizer/ as
  tokenizer.pkl    the encoding: split pattern, mergeable ranks, special tokens (a plain pickled dict)
  token_bytes.pt   UTF-8 byte length of every token (0 for specials), for bits-per-byte

Plain text is always encoded with special tokens disabled: a user who types "<|assistant_start|>" gets ordinary
text, never a control token. Control tokens only enter through render_conversation / encode_special.
"""

import copy
import os
import pickle
import re

import tiktoken
import torch

from nanochat.common import UserError, atomic_write, get_base_dir

SPECIAL_TOKENS = [
    "<|bos|>",              # starts every document
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>",   # the assistant calls the calculator tool
    "<|output_start|>", "<|output_end|>",   # the tool's answer, forced in by the engine
]

# GPT-4's split pattern, except that numbers are split into groups of at most 2 digits (not 3):
# a small vocabulary should not spend entries on every 3-digit number.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


class Tokenizer:
    def __init__(self, pattern: str, mergeable_ranks: dict[bytes, int]):
        self.pattern = pattern
        self.mergeable_ranks = mergeable_ranks
        n = len(mergeable_ranks)
        self.special_tokens = {name: n + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.enc = tiktoken.Encoding(name="nanochat", pat_str=pattern, mergeable_ranks=mergeable_ranks,
                                     special_tokens=self.special_tokens)

    # -------------------------------------------------------------------------
    # Training, saving, loading

    @classmethod
    def train_from_iterator(cls, text_iterator, vocab_size: int, pattern: str = SPLIT_PATTERN) -> "Tokenizer":
        """Train BPE on an iterator of strings; vocab_size counts the special tokens too."""
        import rustbpe
        minimum = 256 + len(SPECIAL_TOKENS)
        if vocab_size < minimum:
            raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least {minimum} "
                             f"(256 byte tokens + {len(SPECIAL_TOKENS)} special tokens)")
        trainer = rustbpe.Tokenizer()
        try:
            trainer.train_from_iterator(text_iterator, vocab_size - len(SPECIAL_TOKENS), pattern=pattern)
        except ValueError as e:
            # rustbpe counts tokens without our specials: restate its limit in the caller's terms.
            if "corpus is empty" in str(e):
                raise ValueError("the training corpus is empty: the text iterator gave no texts") from None
            reachable = re.search(r"only has pairs for (\d+) tokens", str(e))
            if reachable is None:
                raise
            limit = int(reachable.group(1)) + len(SPECIAL_TOKENS)
            raise ValueError(f"the training text is too small for vocab_size={vocab_size}: it supports at most "
                             f"{limit} tokens (with the {len(SPECIAL_TOKENS)} special tokens); give more text or a "
                             f"vocab_size <= {limit}") from None
        ranks = {bytes(token): rank for token, rank in trainer.get_mergeable_ranks()}
        return cls(trainer.get_pattern(), ranks)

    def save(self, directory: str):
        """Write tokenizer.pkl and token_bytes.pt atomically (a crash never leaves a half-written file)."""
        os.makedirs(directory, exist_ok=True)
        state = {"pattern": self.pattern, "mergeable_ranks": self.mergeable_ranks, "special_tokens": SPECIAL_TOKENS}
        atomic_write(os.path.join(directory, "tokenizer.pkl"), lambda f: pickle.dump(state, f))
        token_bytes = self.token_bytes()
        atomic_write(os.path.join(directory, "token_bytes.pt"), lambda f: torch.save(token_bytes, f))

    @classmethod
    def from_directory(cls, directory: str) -> "Tokenizer":
        path = os.path.join(directory, "tokenizer.pkl")
        if not os.path.exists(path):
            raise UserError(f"no tokenizer at {path}: train one first with `python -m scripts.tok_train`")
        with open(path, "rb") as f:
            state = pickle.load(f)
        if state.get("special_tokens") != SPECIAL_TOKENS:
            raise UserError(f"{path} was saved with other special tokens ({state.get('special_tokens')}); "
                             "retrain it with `python -m scripts.tok_train`")
        return cls(state["pattern"], state["mergeable_ranks"])

    def token_bytes(self) -> torch.Tensor:
        """UTF-8 bytes of each token, from its raw bytes (a token may be part of a character); 0 for specials."""
        lengths = torch.zeros(self.get_vocab_size(), dtype=torch.long)
        for token, rank in self.mergeable_ranks.items():
            lengths[rank] = len(token)
        return lengths

    # -------------------------------------------------------------------------
    # Vocabulary

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_special_tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS)

    def encode_special(self, name: str) -> int:
        if name not in self.special_tokens:
            raise KeyError(f"{name!r} is not a special token; known: {', '.join(SPECIAL_TOKENS)}")
        return self.special_tokens[name]

    def get_bos_token_id(self) -> int:
        return self.special_tokens["<|bos|>"]

    def id_to_token(self, token_id: int) -> str:
        return self.enc.decode_single_token_bytes(token_id).decode("utf-8", errors="replace")

    # -------------------------------------------------------------------------
    # Encoding and decoding

    def _as_id(self, token) -> int | None:
        return self.encode_special(token) if isinstance(token, str) else token

    def encode(self, text, prepend=None, append=None, num_threads: int = 8):
        """Encode a string (-> list of ids) or a list of strings (-> list of lists, in parallel threads).

        prepend / append: a token id or special-token name added to each sequence (e.g. prepend="<|bos|>").
        """
        first, last = self._as_id(prepend), self._as_id(append)

        def wrap(ids):
            if first is not None:
                ids.insert(0, first)
            if last is not None:
                ids.append(last)
            return ids

        if isinstance(text, str):
            return wrap(self.enc.encode_ordinary(text))
        if isinstance(text, (list, tuple)):
            for i, item in enumerate(text):
                if not isinstance(item, str):
                    raise TypeError(f"encode() got a {type(item).__name__} at index {i}; expected str")
            return [wrap(ids) for ids in self.enc.encode_ordinary_batch(list(text), num_threads=num_threads)]
        raise TypeError(f"encode() takes a str or a list of str, not {type(text).__name__}")

    def __call__(self, *args, **kwargs):
        return self.encode(*args, **kwargs)

    def decode(self, ids) -> str:
        """Ids to text; bytes that do not form complete UTF-8 characters become U+FFFD."""
        return self.enc.decode(list(ids), errors="replace")

    def decode_bytes(self, ids) -> bytes:
        return self.enc.decode_bytes(list(ids))

    # -------------------------------------------------------------------------
    # Chat

    def render_conversation(self, conversation: dict, max_tokens: int = 2048) -> tuple[list[int], list[int]]:
        """Token ids of a chat and a loss mask of the same length (1 = train on this token).

        The mask is 1 on what the assistant writes (its text, its tool calls, <|assistant_end|>) and 0 on bos,
        user turns, <|assistant_start|> (given, not predicted) and tool outputs (computed, not predicted).
        """
        messages = _normalize_messages(conversation)
        ids, mask = [], []

        def add(tokens, train: int):
            tokens = [tokens] if isinstance(tokens, int) else tokens
            ids.extend(tokens)
            mask.extend([train] * len(tokens))

        sp = self.special_tokens
        add(sp["<|bos|>"], 0)
        for i, message in enumerate(messages):
            content = message["content"]
            if message["role"] == "user":
                if not isinstance(content, str):
                    raise ValueError(f"message {i}: user content must be a string")
                add(sp["<|user_start|>"], 0)
                add(self.encode(content), 0)
                add(sp["<|user_end|>"], 0)
                continue
            add(sp["<|assistant_start|>"], 0)
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts:
                kind, text = part.get("type"), part.get("text")
                if not isinstance(text, str):
                    raise ValueError(f"message {i}: every assistant part needs a string 'text'")
                if kind == "text":
                    add(self.encode(text), 1)
                elif kind == "python":
                    add(sp["<|python_start|>"], 1)
                    add(self.encode(text), 1)
                    add(sp["<|python_end|>"], 1)
                elif kind == "python_output":
                    add(sp["<|output_start|>"], 0)
                    add(self.encode(text), 0)
                    add(sp["<|output_end|>"], 0)
                else:
                    raise ValueError(f"message {i}: unknown part type {kind!r} (text, python, python_output)")
            add(sp["<|assistant_end|>"], 1)
        return ids[:max_tokens], mask[:max_tokens]

    def render_for_completion(self, conversation: dict) -> list[int]:
        """Prompt ids for the model to answer: the chat without its final assistant reply, then <|assistant_start|>."""
        conversation = copy.deepcopy(conversation)
        messages = conversation.get("messages") or []
        if messages and messages[-1].get("role") == "assistant":
            messages.pop()
        ids, _ = self.render_conversation(conversation, max_tokens=1 << 62)
        return ids + [self.special_tokens["<|assistant_start|>"]]

    def visualize(self, ids, mask) -> str:
        """Tokens separated by '|', trained-on tokens marked with brackets: for eyeballing a loss mask."""
        return "|".join(f"[{self.id_to_token(t)}]" if m else self.id_to_token(t) for t, m in zip(ids, mask))


def _normalize_messages(conversation: dict) -> list[dict]:
    """Validate roles and merge a leading system message into the first user message."""
    if not isinstance(conversation, dict) or not isinstance(conversation.get("messages"), list):
        raise ValueError("a conversation is a dict with a 'messages' list")
    messages = [dict(m) for m in conversation["messages"]]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or "content" not in m:
            raise ValueError(f"message {i} needs a role (system, user, assistant) and a content")
    if messages and messages[0]["role"] == "system":
        if len(messages) < 2 or messages[1]["role"] != "user":
            raise ValueError("a system message must be followed by a user message")
        messages[1]["content"] = messages[0]["content"] + "\n\n" + messages[1]["content"]
        messages = messages[1:]
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ValueError(f"message {i} has role {m['role']!r}, expected {expected!r}: "
                             "turns alternate user, assistant, user, ...")
    return messages


def tokenizer_dir() -> str:
    return os.path.join(get_base_dir(), "tokenizer")


def get_tokenizer() -> Tokenizer:
    return Tokenizer.from_directory(tokenizer_dir())


def get_token_bytes(device="cpu") -> torch.Tensor:
    path = os.path.join(tokenizer_dir(), "token_bytes.pt")
    if not os.path.exists(path):
        raise UserError(f"no {path}: train a tokenizer first with `python -m scripts.tok_train`")
    return torch.load(path, map_location=device)
