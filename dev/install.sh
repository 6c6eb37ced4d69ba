#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install nanochat-cpu into it, Rust extension included.
#   bash dev/install.sh            # used by train_cpu.sh and dev/test.sh; safe to rerun
# Knobs: VENV (default .venv), TORCH_SPEC (default torch==2.13.0), EXTRAS (default test).
# Offline (no crates.io, as on the build machines) the Rust crates come from Debian's packaged sources:
# this writes .cargo/config.toml (untracked) to use them, installing the packages with apt-get when root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS-test}   # EXTRAS="" installs without the test tools
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo >/dev/null; then
  echo "error: cargo (Rust) not found. Install it from https://rustup.rs (or apt-get install cargo), then rerun." >&2
  exit 1
fi

# --- Rust crates: crates.io when reachable, else Debian's crate sources --------------------------------------
if [ ! -f .cargo/config.toml ] && ! curl -s -o /dev/null --max-time 5 https://index.crates.io/config.json; then
  echo "crates.io unreachable: building rustbpe from Debian's crate sources (/usr/share/cargo/registry)"
  DEBIAN_CRATES="librust-pyo3-dev librust-fancy-regex-dev librust-rayon-dev librust-ahash-dev"
  if [ ! -d /usr/share/cargo/registry/pyo3-0.17.3 ]; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q $DEBIAN_CRATES >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $DEBIAN_CRATES >/dev/null; }
    else
      echo "error: no crates.io and no Debian crate sources; as root run: apt-get install $DEBIAN_CRATES" >&2
      exit 1
    fi
  fi
  mkdir -p .cargo
  printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "/usr/share/cargo/registry"\n' > .cargo/config.toml
fi

# --- Python environment ------------------------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
python -m pip install -q "maturin>=1.5,<2"
python -m pip install -q --no-build-isolation -e ".${EXTRAS:+[$EXTRAS]}"
python -c "import rustbpe, nanochat, torch; print(f'installed nanochat-cpu into $VENV (torch {torch.__version__})')"
