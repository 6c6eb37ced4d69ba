"""
The run report: stages record in any order, a stage that did not run is shown as missing (never as a number),
a re-recorded stage replaces its record, plots are written and linked, reset starts over.

    pytest tests/test_report.py -q
"""

import os
import re

from nanochat import report


def test_records_in_any_order_and_missing_stages(base_dir):
    history = {"step": [1, 2, 3], "minutes": [0.1, 0.2, 0.3], "loss": [5.0, 4.0, 3.5],
               "val_step": [3], "val_minutes": [0.3], "val_bpb": [1.9]}
    report.reset()
    report.record("chat_eval_sft", metrics={"ARC-Easy": {"value": 0.31, "stderr": 0.02},
                                            "ChatCORE": {"value": 0.05, "stderr": 0.01}}, seconds=30)
    report.record("base_train", settings={"depth": 4}, metrics={"val_bpb": 2.5}, seconds=60, history=history)
    report.record("base_train", settings={"depth": 4}, metrics={"val_bpb": 1.75}, seconds=90, history=history)
    report.record("base_eval", metrics={"CORE": {"value": 0.012, "stderr": 0.009}}, seconds=20)
    text = open(report.generate(price_per_hour=2.0)).read()

    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if re.match(r"\| (base|mid|sft|rl) \|", line)}
    columns = dict(zip(report.COLUMNS, range(len(report.COLUMNS))))
    assert rows["base"][columns["val bpb"]] == "1.7500"                    # the re-recorded value replaced the first
    assert rows["base"][columns["CORE"]] == "0.0120 ± 0.0090"
    assert rows["sft"][columns["ARC-Easy"]] == "0.3100 ± 0.0200"
    assert rows["sft"][columns["MMLU"]] == "missing" and rows["sft"][columns["val bpb"]] == "missing"
    assert all(cell == "missing" for cell in rows["mid"] + rows["rl"])     # stages that never ran: no numbers
    assert "## mid_train\n\nmissing" in text and "## chat_rl\n\nmissing" in text
    assert text.index("## base_train") < text.index("## base_eval") < text.index("## chat_eval_sft")  # pipeline order
    assert "Total wall time of the recorded stages: 2.3 min; at $2.00 per hour: $0.078" in text
    assert re.search(r"- CPU: .+, \d+ cores, [\d.]+ GiB RAM; native bf16 (yes|no), AMX (yes|no)", text)
    assert re.search(r"- git commit: \w+", text) and "- torch " in text and re.search(r"Code: [\d,]+ lines", text)

    for name in ("base_train_by_step.png", "base_train_by_minutes.png"):  # plots written and linked
        path = os.path.join(report.report_dir(), name)
        assert f"![{name}]({name})" in text and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_reset_starts_a_new_report(base_dir):
    report.record("tok_train", metrics={"vocab_size": 8192}, seconds=5)
    report.reset()
    text = open(report.generate()).read()
    assert "## tok_train\n\nmissing" in text and "Total wall time of the recorded stages: 0.0 min." in text


def test_reset_from_a_stage_drops_it_and_every_later_stage(base_dir):
    for stage in ("tok_train", "base_train", "base_eval", "chat_sft", "chat_eval_rl"):
        report.record(stage, metrics={"x": 1.0}, seconds=1)
    report.reset("base_train")     # base_train re-runs: what came after it is stale, what came before is not
    assert sorted(report.load_records()) == ["tok_train"]
    report.reset("sample")         # not a recording stage: nothing else goes
    assert sorted(report.load_records()) == ["tok_train"]
