"""
The run report: each stage records what it did with one call, and `generate` turns the records into report.md.

    from nanochat import report
    report.record("base_train", settings={...}, metrics={"val_bpb": 1.58}, seconds=480.0,
                  history={"step": [...], "minutes": [...], "loss": [...], "val_step": [...], "val_minutes": [...],
                           "val_bpb": [...]})

    python -m nanochat.report reset                 # start a new report: removes the records
    python -m nanochat.report reset --from mid_train  # drop mid_train's record and those of every later stage
    python -m nanochat.report generate --price 0.10 # <base>/report/report.md + plots, cost at $0.10 per hour

A record is <base>/report/records/<stage>.json, written atomically; recording a stage again replaces its record,
so stages can run (and re-run) in any order. report.md has a header (date, git commit, CPU, cores, RAM, bf16/AMX,
torch), a summary table of every stage's metrics with standard errors (a stage that did not run shows "missing",
never a number), a section per stage, the total wall time and its cost, the code size, and PNG plots of training
loss and val bpb against step and against minutes for each training stage.

Tests: pytest tests/test_report.py -q
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess

from nanochat.common import atomic_write, cpu_flags, get_base_dir, get_rank

# The stages in pipeline order; a record of another name is shown after them.
STAGES = ["data", "tok_train", "tok_eval", "base_train", "base_loss", "base_eval", "mid_train", "chat_sft", "chat_rl",
          "chat_eval_base", "chat_eval_mid", "chat_eval_sft", "chat_eval_rl"]
TRAINING_STAGES = ["base_train", "mid_train", "chat_sft", "chat_rl"]
# Summary table: one row per model stage, one column per metric; each cell is looked up in the records below.
MODELS = ["base", "mid", "sft", "rl"]
COLUMNS = ["val bpb", "CORE", "ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee", "Arithmetic",
           "Arithmetic-x3", "Countries", "Countries-trained", "Wiki", "Wiki-trained", "ChatCORE"]
TRAIN_STAGE_OF = {"base": "base_train", "mid": "mid_train", "sft": "chat_sft", "rl": "chat_rl"}
MISSING = "missing"


def report_dir() -> str:
    return os.path.join(get_base_dir(), "report")


def _records_dir() -> str:
    return os.path.join(report_dir(), "records")


# -----------------------------------------------------------------------------
# Recording (what the stages call)

def record(stage: str, settings: dict | None = None, metrics: dict | None = None, seconds: float | None = None,
           history: dict | None = None, text: str = ""):
    """Record (or replace) one stage's settings, metrics (numbers, or {"value", "stderr"} dicts), wall seconds,
    training history (lists for the plots) and free text (e.g. a sample). Values must be JSON-serialisable.
    Under torchrun only rank 0 records."""
    if get_rank() != 0:
        return
    entry = {"stage": stage, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
             "seconds": seconds, "settings": settings or {}, "metrics": metrics or {}, "history": history or {},
             "text": text}
    data = json.dumps(entry, indent=1, default=str).encode()
    os.makedirs(_records_dir(), exist_ok=True)
    atomic_write(os.path.join(_records_dir(), f"{stage}.json"), lambda f: f.write(data))


def load_records() -> dict[str, dict]:
    records = {}
    for path in sorted(glob.glob(os.path.join(_records_dir(), "*.json"))):
        with open(path) as f:
            entry = json.load(f)
        records[entry["stage"]] = entry
    return records


def reset(from_stage: str | None = None):
    """Remove the records (and the last report's plots): the next run starts a new report. With from_stage, remove
    only the records of that stage and of every stage after it in STAGES (they depend on its outputs: a re-run of it
    makes them stale); the earlier stages' records stay."""
    if from_stage is None:
        shutil.rmtree(report_dir(), ignore_errors=True)
    else:
        later = STAGES[STAGES.index(from_stage):] if from_stage in STAGES else [from_stage]
        for stage in later:
            try:
                os.remove(os.path.join(_records_dir(), f"{stage}.json"))
            except FileNotFoundError:
                pass
    os.makedirs(_records_dir(), exist_ok=True)


# -----------------------------------------------------------------------------
# The report

def system_info() -> dict:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    flags = cpu_flags()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = run(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    dirty = bool(run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"]))
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": (commit + (" (with uncommitted changes)" if dirty else "")) if commit else "unknown",
            "cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram, 1) if ram else None,
            "bf16": "avx512_bf16" in flags or "amx_bf16" in flags, "amx": "amx_tile" in flags,
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "python": platform.python_version()}


def code_size() -> dict:
    """Lines and characters of the project's own code (Python, Rust, shell, the chat page)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [f for pattern in ("nanochat/*.py", "nanochat/*.html", "scripts/*.py", "tasks/*.py", "rustbpe/src/*.rs",
                               "*.sh") for f in glob.glob(os.path.join(repo, pattern))]
    lines = chars = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        lines += text.count("\n")
        chars += len(text)
    tests = glob.glob(os.path.join(repo, "tests", "*.py"))
    return {"files": len(files), "lines": lines, "characters": chars, "test_files": len(tests)}


def _cell(value) -> str:
    """A metric as text: 0.1234 ± 0.0056 for {"value", "stderr"} (then its "note", if any), the number alone, or
    "missing"."""
    if value is None:
        return MISSING
    if isinstance(value, dict):
        if value.get("value") is None:
            return MISSING
        text = f"{value['value']:.4f} ± {value['stderr']:.4f}" if value.get("stderr") is not None \
            else f"{value['value']:.4f}"
        return f"{text} ({value['note']})" if value.get("note") else text   # e.g. "weak sandbox: without mount"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_cells(records: dict) -> dict[str, dict[str, object]]:
    """{model stage: {column: metric or None}} from the records: val bpb from the training stage, CORE from
    base_eval, the task accuracies and ChatCORE from chat_eval_<model>."""
    table = {}
    for model in MODELS:
        train = records.get(TRAIN_STAGE_OF[model], {}).get("metrics", {})
        chat = records.get(f"chat_eval_{model}", {}).get("metrics", {})
        row = {"val bpb": train.get("val_bpb"), "CORE": records.get("base_eval", {}).get("metrics", {}).get("CORE")
               if model == "base" else None}
        for column in COLUMNS[2:]:
            row[column] = chat.get(column)
        table[model] = row
    return table


def plot_history(stage: str, history: dict, out_dir: str) -> list[str]:
    """Two PNGs for a training stage: its training curve ("loss", or "reward" for RL) and val bpb against step,
    and against minutes. Returns their names."""
    import matplotlib
    matplotlib.use("Agg")               # no display: files only
    import matplotlib.pyplot as plt
    names = []
    y_key = "loss" if history.get("loss") else "reward"
    for x_key, val_x_key, label in (("step", "val_step", "step"), ("minutes", "val_minutes", "training minutes")):
        if not history.get(x_key) or not history.get(y_key):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(history[x_key], history[y_key], lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel(f"train {y_key}")
        if history.get("val_bpb") and history.get(val_x_key):
            ax2 = ax.twinx()
            ax2.plot(history[val_x_key], history["val_bpb"], "o-", color="tab:orange", label="val bpb")
            ax2.set_ylabel("val bits per byte")
        ax.set_title(f"{stage}: {y_key}" + (" and val bpb" if history.get("val_bpb") else "") + f" by {label}")
        fig.tight_layout()
        name = f"{stage}_by_{x_key}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        names.append(name)
    return names


def generate(price_per_hour: float = 0.0) -> str:
    """Write report.md (and the plots) from the records; returns its path."""
    records = load_records()
    out_dir = report_dir()
    os.makedirs(out_dir, exist_ok=True)
    info = system_info()
    lines = ["# nanochat-cpu run report", "",
             f"- date: {info['date']}", f"- git commit: {info['commit']}",
             f"- CPU: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM; native bf16 "
             f"{'yes' if info['bf16'] else 'no'}, AMX {'yes' if info['amx'] else 'no'}; CUDA "
             f"{'yes' if info['cuda'] else 'no'}",
             f"- torch {info['torch']}, Python {info['python']}", ""]

    # summary
    cells = summary_cells(records)
    lines += ["## Summary", "", "| stage | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for model in MODELS:
        lines.append(f"| {model} | " + " | ".join(_cell(cells[model][c]) for c in COLUMNS) + " |")
    total = sum(r["seconds"] or 0 for r in records.values())
    lines += ["", f"Total wall time of the recorded stages: {total / 60:.1f} min"
              + (f"; at ${price_per_hour:.2f} per hour: ${price_per_hour * total / 3600:.3f}" if price_per_hour
                 else "") + ".", ""]
    size = code_size()
    lines += [f"Code: {size['lines']:,} lines ({size['characters']:,} characters) in {size['files']} files, plus "
              f"{size['test_files']} test files.", ""]

    # a section per stage
    for stage in STAGES + sorted(s for s in records if s not in STAGES):
        entry = records.get(stage)
        lines += [f"## {stage}", ""]
        if entry is None:
            lines += [f"{MISSING}: this stage did not record anything", ""]
            continue
        seconds = entry["seconds"]
        lines.append(f"finished {entry['finished']}" + (f", {seconds / 60:.2f} min" if seconds is not None else ""))
        lines.append("")
        if entry["metrics"]:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in entry["metrics"].items()]
            lines.append("")
        if entry["settings"]:
            lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in entry["settings"].items()))
            lines.append("")
        if entry["text"]:
            lines += ["```", entry["text"].rstrip(), "```", ""]
        if stage in TRAINING_STAGES and entry["history"]:
            for name in plot_history(stage, entry["history"], out_dir):
                lines += [f"![{name}]({name})", ""]
    path = os.path.join(out_dir, "report.md")
    text = "\n".join(lines).encode()
    atomic_write(path, lambda f: f.write(text))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description="Reset or generate the nanochat run report")
    p.add_argument("command", choices=["reset", "generate"])
    p.add_argument("--price", type=float, default=0.0, help="hourly price of the machine, for the cost line")
    p.add_argument("--from", dest="from_stage", default=None,
                   help="reset: remove only this stage's record and those of the stages after it")
    args = p.parse_args(argv)
    if args.command == "reset":
        reset(args.from_stage)
        print(f"report reset: {_records_dir()} is empty" if args.from_stage is None else
              f"report reset from {args.from_stage} on: the records of the earlier stages stay")
    else:
        print(f"report written to {generate(args.price)}")


if __name__ == "__main__":
    main()
