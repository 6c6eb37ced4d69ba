#!/usr/bin/env bash
# The whole test suite: installs the project (dev/install.sh), then runs the Rust unit tests and pytest.
#   bash dev/test.sh                 # extra arguments go to pytest, e.g. bash dev/test.sh -k tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/install.sh
. "${VENV:-.venv}/bin/activate"
export PATH="$HOME/.cargo/bin:$PATH"
bash dev/install_test_tools.sh
echo "=== cargo test (rustbpe) ==="
(cd rustbpe && cargo test -q)
echo "=== pytest ==="
python -m pytest -q "$@"
