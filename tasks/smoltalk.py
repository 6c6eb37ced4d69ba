"""
General conversations for chat training: SmolTalk from the Hugging Face hub when online
(HuggingFaceTB/smol-smoltalk, train / test), the chitchat-dataset 0.9.0 wheel from PyPI offline
(7,168 human conversations, MIT licence; one conversation in twenty is held out as test by a fixed hash).

Chitchat turns alternate between two people; the one who speaks first becomes the user, the other the assistant.
A person's consecutive messages are joined into one turn, and a conversation ending on the user is trimmed.
Chitchat conversations are long (median ~400 tokens, 45% longer than a 512-token context), so each one is cut into
pieces of at most PIECE_MESSAGES messages, every piece starting with a user turn: a small model's context holds
them whole, and no text is lost to truncation.

    from tasks.smoltalk import SmolTalk
    task = SmolTalk("train"); task[0]["messages"]
Tests: pytest tests/test_tasks.py -q -k smoltalk
"""

import json
import logging
import zipfile
import zlib

from nanochat.packages import fetch_pypi
from tasks.common import Task, load_hub_dataset, use_hub

logger = logging.getLogger("nanochat")

CHITCHAT = ("chitchat-dataset", "0.9.0")
PIECE_MESSAGES = 6       # 3 exchanges, ~270 tokens


class SmolTalk(Task):
    name = "SmolTalk"
    eval_type = "generative"
    eval_split = None  # general chat data: trained on, never scored

    def __init__(self, split: str):
        super().__init__(split)
        if split == "validation":
            raise ValueError("SmolTalk has train and test splits only")
        if use_hub(f"SmolTalk {split}"):
            self.data = load_hub_dataset("HuggingFaceTB/smol-smoltalk", None, split)
            self.name, source = "SmolTalk", "hub HuggingFaceTB/smol-smoltalk"
        else:
            self.data = chitchat_conversations(split)
            self.name, source = "ChitChat", f"chitchat-dataset {CHITCHAT[1]} (offline)"
        logger.info("%s %s: %d conversations from %s", self.name, split, len(self.data), source)

    def num_examples(self) -> int:
        return len(self.data)

    def get_example(self, index: int) -> dict:
        row = self.data[index]
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        raise NotImplementedError("open-ended conversations have no right answer to check")


def split_of(conv_id: str) -> str:
    """One conversation in twenty is test, by a fixed hash of its id (its pieces go with it)."""
    return "test" if zlib.crc32(conv_id.encode()) % 20 == 0 else "train"


def chitchat_conversations(split: str, wheel=None) -> list[dict]:
    wheel = wheel or fetch_pypi(*CHITCHAT)
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("chitchat_dataset/dataset.json"))
    out = []
    for conv_id in sorted(data):  # sorted: a stable order whatever the JSON order
        if split_of(conv_id) != split:
            continue
        messages = to_messages(data[conv_id]["messages"])
        for start in range(0, len(messages), PIECE_MESSAGES):   # messages has an even length: user first
            out.append({"id": f"{conv_id}:{start // PIECE_MESSAGES}",
                        "messages": messages[start:start + PIECE_MESSAGES]})
    return out


def to_messages(turns: list[list[dict]]) -> list[dict]:
    """Chitchat turns (lists of {"text", "sender"}) -> alternating user/assistant messages."""
    messages, first = [], None
    for turn in turns:
        text = "\n".join(u["text"].strip() for u in turn if u.get("text", "").strip())
        if not text:
            continue
        first = first or turn[0]["sender"]
        role = "user" if turn[0]["sender"] == first else "assistant"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append({"role": role, "content": text})
    if messages and messages[-1]["role"] == "user":
        messages.pop()
    return messages if len(messages) >= 2 else []
