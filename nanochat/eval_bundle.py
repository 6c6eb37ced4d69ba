"""
The CORE evaluation bundle: the 22 in-context-learning tasks of the DCLM CORE metric, their table, the bundle's
format on disk, reading a task's examples and metadata from it, and downloading the public one.

Two bundles share one format: <base>/eval_bundle is the public nanochat eval_bundle.zip, downloaded here;
<base>/eval_bundle_offline is assembled from registry packages by nanochat/eval_data.py (20 of the 22 tasks).
This module never imports eval_data.py: code that only reads a bundle (a CORE evaluator) imports this one.

Bundle layout:
    core.yaml            icl_tasks: [{label, dataset_uri, num_fewshot: [k], icl_task_type, continuation_delimiter}]
    eval_meta_data.csv   "Eval Task", "Random baseline" (percent) and a few descriptive columns
    eval_data/<category>/<name>.jsonl   one example per line, by icl_task_type:
        multiple_choice    {"query": str, "choices": [str, ...], "gold": int}
        schema             {"context_options": [str, ...], "continuation": str, "gold": int}
        language_modeling  {"context": str, "continuation": str}
    manifest.json        {"source", "present", "total", "missing", "tasks": [{label, present, examples, ...}]}
manifest.json says which tasks are present, so a CORE computed on fewer tasks can say so.
A prompt is `query + continuation_delimiter + choice` (multiple choice), `option + delimiter + continuation`
(schema) or `context + delimiter + continuation` (language modelling); few-shot examples are earlier such
texts joined by blank lines. Nothing here scores a model.

    from nanochat.eval_bundle import load_task, load_core_tasks
    task = load_task("hellaswag")    # {label, icl_task_type, num_fewshot, continuation_delimiter,
                                     #  random_baseline (a fraction), examples: [...]}
    tasks = load_core_tasks()        # every task present, in CORE order

Without a bundle on disk these raise EvalDataError naming the command that gets one:
    python -m nanochat.eval_data     # reuse a bundle on disk, else download it, else build it offline
Tests: pytest tests/test_eval_data.py -q
"""

import csv
import gzip
import json
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import yaml

from nanochat.common import atomic_write, get_base_dir, staged_dir

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
BUNDLE_DIRS = {"online": "eval_bundle", "offline": "eval_bundle_offline"}   # folders under <base>


class EvalDataError(ValueError):
    """A source file is missing, corrupt or not in the expected format."""


# --- the 22 CORE tasks (DCLM core.yaml / eval_meta_data.csv): label, category, type, shots, delimiter, baseline% ---
CORE_TASKS = [
    dict(label=label, category=cat, icl_task_type=kind, num_fewshot=shots, continuation_delimiter=delim,
         random_baseline=base, dataset=dataset)
    for label, cat, kind, shots, delim, base, dataset in [
        ("hellaswag_zeroshot", "language_understanding", "multiple_choice", 0, " ", 25, "hellaswag"),
        ("jeopardy", "world_knowledge", "language_modeling", 10, "\nAnswer: ", 0, "jeopardy_all"),
        ("bigbench_qa_wikidata", "world_knowledge", "language_modeling", 10, " ", 0, "bigbench_qa_wikidata"),
        ("arc_easy", "world_knowledge", "multiple_choice", 10, "\nAnswer: ", 25, "arc_easy"),
        ("arc_challenge", "world_knowledge", "multiple_choice", 10, "\nAnswer: ", 25, "arc_challenge"),
        ("copa", "commonsense_reasoning", "multiple_choice", 0, " ", 50, "copa"),
        ("commonsense_qa", "commonsense_reasoning", "multiple_choice", 10, " ", 20, "commonsense_qa"),
        ("piqa", "commonsense_reasoning", "multiple_choice", 10, "\nAnswer: ", 50, "piqa"),
        ("openbook_qa", "commonsense_reasoning", "multiple_choice", 0, " ", 25, "openbook_qa"),
        ("lambada_openai", "language_understanding", "language_modeling", 0, " ", 0, "lambada_openai"),
        ("hellaswag", "language_understanding", "multiple_choice", 10, " ", 25, "hellaswag"),
        ("winograd", "language_understanding", "schema", 0, " ", 50, "winograd_wsc"),
        ("winogrande", "language_understanding", "schema", 0, " ", 50, "winogrande"),
        ("bigbench_dyck_languages", "symbolic_problem_solving", "language_modeling", 10, " ", 0,
         "bigbench_dyck_languages"),
        ("agi_eval_lsat_ar", "symbolic_problem_solving", "multiple_choice", 3, " ", 20, "agi_eval_lsat_ar"),
        ("bigbench_cs_algorithms", "symbolic_problem_solving", "language_modeling", 10, " ", 0,
         "bigbench_cs_algorithms"),
        ("bigbench_operators", "symbolic_problem_solving", "language_modeling", 10, " ", 0, "bigbench_operators"),
        ("bigbench_repeat_copy_logic", "symbolic_problem_solving", "language_modeling", 10, " ", 0,
         "bigbench_repeat_copy_logic"),
        ("squad", "reading_comprehension", "language_modeling", 10, " ", 0, "squad"),
        ("coqa", "reading_comprehension", "language_modeling", 0, " ", 0, "coqa"),
        ("boolq", "reading_comprehension", "multiple_choice", 10, "\nAnswer: ", 62, "boolq"),
        ("bigbench_language_identification", "language_understanding", "multiple_choice", 10, " ", 9.1,
         "bigbench_language_identification"),
    ]
]
CORE_LABELS = [t["label"] for t in CORE_TASKS]


def read_jsonl(data: bytes, where: str) -> list[dict]:
    """Records of a JSON-lines file (gzip-compressed or not); names the line that does not parse."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise EvalDataError(f"{where}: corrupt gzip data ({e})") from None
    records = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise EvalDataError(f"{where}, line {n}: not valid JSON ({e.msg})") from None
    return records


def bundle_dir(kind: str) -> Path:
    """Where the "online" (downloaded) or the "offline" (built) bundle lives."""
    return Path(get_base_dir()) / BUNDLE_DIRS[kind]


def default_bundle_dir() -> Path | None:
    """The downloaded bundle if present, else the offline build if present."""
    for kind in BUNDLE_DIRS:
        if (bundle_dir(kind) / "core.yaml").exists():
            return bundle_dir(kind)
    return None


def _bundle(bundle_dir: str | Path | None) -> Path:
    if bundle_dir:
        return Path(bundle_dir)
    found = default_bundle_dir()
    if found is None:
        raise EvalDataError(f"no CORE eval bundle in {get_base_dir()}: get one with `python -m nanochat.eval_data` "
                            "(downloads it, or builds it from registry packages offline)")
    return found


# --- writing a bundle (the offline builder calls this) and its manifest ---

def _manifest(source: str, entries: list[dict]) -> dict:
    return {"source": source, "present": sum(e["present"] for e in entries), "total": len(CORE_TASKS),
            "missing": [e["label"] for e in entries if not e["present"]], "tasks": entries}


def _save_manifest(bundle: Path, manifest: dict) -> dict:
    text = (json.dumps(manifest, indent=2) + "\n").encode()
    atomic_write(str(bundle / "manifest.json"), lambda f: f.write(text))
    return manifest


def write_bundle(out_dir: Path, examples: dict[str, list[dict]], notes: dict[str, str], source: str) -> dict:
    """Write core.yaml, eval_meta_data.csv, eval_data/ and manifest.json for the tasks in `examples` (label ->
    examples; notes: label -> where it came from or why it is missing). Meant for a staged folder
    (common.staged_dir), which makes the whole bundle appear at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    icl_tasks, manifest_tasks = [], []
    for t in CORE_TASKS:
        uri = f"{t['category']}/{t['dataset']}.jsonl"
        present = t["label"] in examples
        if present:
            path = out_dir / "eval_data" / uri
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                for ex in examples[t["label"]]:
                    f.write(json.dumps(ex, ensure_ascii=False) + "\n")
            icl_tasks.append({"label": t["label"], "dataset_uri": uri, "num_fewshot": [t["num_fewshot"]],
                              "icl_task_type": t["icl_task_type"],
                              "continuation_delimiter": t["continuation_delimiter"]})
        manifest_tasks.append({"label": t["label"], "present": present,
                               "examples": len(examples.get(t["label"], [])),
                               "random_baseline": t["random_baseline"] / 100, "num_fewshot": t["num_fewshot"],
                               "icl_task_type": t["icl_task_type"], "note": notes.get(t["label"], "")})
    (out_dir / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": icl_tasks}, sort_keys=False, allow_unicode=True))
    with open(out_dir / "eval_meta_data.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Eval Task", "Task Category", "Task Type", "#shots", "#datapoints", "Random baseline"])
        for t, m in zip(CORE_TASKS, manifest_tasks):
            if m["present"]:
                w.writerow([t["label"], t["category"], t["icl_task_type"], t["num_fewshot"], m["examples"],
                            t["random_baseline"]])
    return _save_manifest(out_dir, _manifest(source, manifest_tasks))


def write_manifest_for(bundle: Path, source: str) -> dict:
    """manifest.json for an existing bundle (the downloaded zip has none): which CORE tasks it holds."""
    tasks = {t["label"]: t for t in _read_core_yaml(bundle)}
    baselines = _read_baselines(bundle)
    entries = []
    for t in CORE_TASKS:
        have = t["label"] in tasks and (bundle / "eval_data" / tasks[t["label"]]["dataset_uri"]).exists()
        n = sum(1 for line in open(bundle / "eval_data" / tasks[t["label"]]["dataset_uri"], encoding="utf-8")
                if line.strip()) if have else 0
        entries.append({"label": t["label"], "present": have, "examples": n,
                        "random_baseline": baselines.get(t["label"], t["random_baseline"]) / 100,
                        "num_fewshot": t["num_fewshot"], "icl_task_type": t["icl_task_type"], "note": ""})
    return _save_manifest(bundle, _manifest(source, entries))


# --- download ---

def download_bundle(out_dir: str | Path | None = None, url: str = EVAL_BUNDLE_URL) -> dict:
    """Download and unpack the public eval_bundle.zip, then write its manifest.json. The bundle appears whole or
    not at all (common.staged_dir)."""
    out_dir = Path(out_dir or bundle_dir("online"))
    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "eval_bundle.zip"
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(zpath, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise EvalDataError(f"cannot download the CORE eval bundle from {url} ({e}). Without that network "
                                f"access, build it from packages: python -m nanochat.eval_data --source offline")
        try:
            with zipfile.ZipFile(zpath) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise EvalDataError(f"{url}: the download is not a zip file ({e})") from None
        cores = list(Path(tmp).rglob("core.yaml"))
        if not cores:
            raise EvalDataError(f"{url}: the zip has no core.yaml; is this the CORE eval bundle?")
        with staged_dir(out_dir, replace=True) as staging:
            shutil.copytree(cores[0].parent, staging, dirs_exist_ok=True)
            write_manifest_for(staging, source=f"eval bundle ({url})")
    return load_manifest(out_dir)


# --- reading ---

def _read_core_yaml(bundle: Path) -> list[dict]:
    path = bundle / "core.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise EvalDataError(f"{path}: cannot read the task list ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("icl_tasks"), list):
        raise EvalDataError(f"{path}: expected a mapping with an 'icl_tasks' list")
    for n, t in enumerate(doc["icl_tasks"], 1):
        missing = [k for k in ("label", "dataset_uri", "num_fewshot", "icl_task_type") if k not in t]
        if missing:
            raise EvalDataError(f"{path}: task {n} lacks {', '.join(missing)}")
    return doc["icl_tasks"]


def _read_baselines(bundle: Path) -> dict[str, float]:
    """Random baselines in percent by task, from eval_meta_data.csv."""
    path = bundle / "eval_meta_data.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["Eval Task"]: float(row["Random baseline"]) for row in csv.DictReader(f)}


def _read_baselines(bundle: Path) -> dict[str, float]:
    """Random baselines in percent by task, from eval_meta_data.csv."""
    path = bundle / "eval_meta_data.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["Eval Task"]: float(row["Random baseline"]) for row in csv.DictReader(f)}


def load_manifest(bundle_dir: str | Path | None = None) -> dict:
    """The bundle's manifest.json (written first if the bundle has none). Default bundle: default_bundle_dir()."""
    bundle = _bundle(bundle_dir)
    path = bundle / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else write_manifest_for(bundle, source=str(bundle))


def _load(bundle: Path, entry: dict, baselines: dict[str, float]) -> dict:
    """One core.yaml entry with its metadata normalised and its examples read."""
    path = bundle / "eval_data" / entry["dataset_uri"]
    if not path.exists():
        raise EvalDataError(f"{path}: listed in core.yaml but missing; rebuild the bundle")
    shots = entry["num_fewshot"][0] if isinstance(entry["num_fewshot"], list) else entry["num_fewshot"]
    default = next((t["random_baseline"] for t in CORE_TASKS if t["label"] == entry["label"]), 0.0)
    return {"label": entry["label"], "icl_task_type": entry["icl_task_type"], "num_fewshot": int(shots),
            "continuation_delimiter": entry.get("continuation_delimiter", " "),
            "random_baseline": baselines.get(entry["label"], default) / 100,
            "examples": read_jsonl(path.read_bytes(), str(path))}


def load_task(label: str, bundle_dir: str | Path | None = None) -> dict:
    """One CORE task of a bundle: {label, icl_task_type, num_fewshot (int), continuation_delimiter,
    random_baseline (a fraction), examples}. Default bundle: default_bundle_dir()."""
    bundle = _bundle(bundle_dir)
    entries = _read_core_yaml(bundle)
    for entry in entries:
        if entry["label"] == label:
            return _load(bundle, entry, _read_baselines(bundle))
    raise EvalDataError(f"task {label!r} is not in {bundle / 'core.yaml'} (it has {len(entries)} tasks; "
                        "load_manifest() lists the missing ones)")


def load_core_tasks(bundle_dir: str | Path | None = None) -> list[dict]:
    """Every CORE task present in a bundle, in CORE order, each as load_task() returns it. Tasks missing from the
    bundle are left out; load_manifest() lists them. Default bundle: default_bundle_dir()."""
    bundle = _bundle(bundle_dir)
    baselines = _read_baselines(bundle)
    tasks = [_load(bundle, entry, baselines) for entry in _read_core_yaml(bundle)]
    order = {label: i for i, label in enumerate(CORE_LABELS)}
    return sorted(tasks, key=lambda t: order.get(t["label"], len(order)))
