"""
CustomJSON: your own conversations for chat training, from a JSON-lines file. Each line is either a list of
messages or an object with a "messages" list; a message is {"role": "user"|"assistant"|"system", "content": str}.
Roles alternate user/assistant (an optional system message may come first) and the last one is the assistant's.

    {"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am ..."}]}
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]

    from tasks.customjson import CustomJSON
    task = CustomJSON("my_conversations.jsonl")
A line that breaks these rules stops loading with its line number and what is wrong.
Tests: pytest tests/test_tasks.py -q -k customjson
"""

import json
import logging
from pathlib import Path

from tasks.common import Task

logger = logging.getLogger("nanochat")


class CustomJSON(Task):
    name = "CustomJSON"
    eval_type = "generative"
    eval_split = None  # the user's training data

    def __init__(self, filepath: str | Path, split: str = "train"):
        super().__init__(split)
        self.path = Path(filepath)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file (expected JSON lines of conversations)")
        self.conversations = []
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    self.conversations.append(parse_line(line, f"{self.path}:{n}"))
        if not self.conversations:
            raise ValueError(f"{self.path}: no conversations in the file")
        self.name = f"CustomJSON({self.path.name})"
        logger.info("%s: %d conversations", self.path, len(self.conversations))

    def num_examples(self) -> int:
        return len(self.conversations)

    def get_example(self, index: int) -> dict:
        return {"messages": self.conversations[index]}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        raise NotImplementedError("custom conversations have no right answer to check")


def parse_line(line: str, where: str) -> list[dict]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    messages = obj.get("messages") if isinstance(obj, dict) else obj
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected a list of messages or an object with a non-empty 'messages' list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise ValueError(f"{where}: message {i + 1} must be an object with exactly 'role' and 'content'")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise ValueError(f"{where}: message {i + 1} has empty or non-string content")
    offset = 1 if messages[0]["role"] == "system" else 0
    body = messages[offset:]
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ValueError(f"{where}: message {i + 1 + offset} has role {m['role']!r}, "
                             f"expected {expected!r} (roles alternate user/assistant, system only first)")
    if len(body) < 2 or body[-1]["role"] != "assistant":
        raise ValueError(f"{where}: a conversation needs a user message and ends with the assistant's reply")
    return messages
