#!/usr/bin/env bash
# Rebuild the offline pretraining data as it was when the Speed issue was filed, so its bpb target can be checked on
# the data it was measured on. That was before the per-source mix (commit ab981bc): every source once, dictionary
# markup kept, the last shard the validation split. Today's code then trains on it as a local folder of shards.
#   bash dev/issue_data.sh [OUT]        # OUT defaults to ~/.cache/nanochat-issue-data
#   NANOCHAT_BASE_DIR=OUT python -m dev.bench_train --time-budget 14 --only none --extra "--data OUT/shards"
# Needs the git history (a clone, not an export) and the project's venv (bash dev/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-$HOME/.cache/nanochat-issue-data}")
ISSUE_COMMIT=ae54aec        # the last commit before the per-source offline mix
PY=${PYTHON:-$PWD/.venv/bin/python}
here_base=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}

if [ -f "$OUT/tokenizer/tokenizer.pkl" ] && ls "$OUT"/shards/shard_*.parquet >/dev/null 2>&1; then
  echo "issue-era data already in $OUT (delete it to rebuild)"
  exit 0
fi
git cat-file -e "$ISSUE_COMMIT^{commit}" 2>/dev/null \
  || { echo "error: commit $ISSUE_COMMIT is not in this checkout's history: run this in a full git clone" >&2; exit 1; }
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$tree" "$ISSUE_COMMIT"

mkdir -p "$OUT/build"
# The registry packages are the same: reuse the ones already fetched, if any.
[ -d "$here_base/packages" ] && [ ! -e "$OUT/build/packages" ] && ln -s "$here_base/packages" "$OUT/build/packages"
echo "building the offline shards with the code of $ISSUE_COMMIT"
(cd "$tree" && NANOCHAT_BASE_DIR="$OUT/build" "$PY" -m nanochat.dataset --offline)
rm -rf "$OUT/shards" && mv "$OUT/build/offline_data" "$OUT/shards" && rm -rf "$OUT/build"

# That commit's train_cpu.sh trained the tokenizer with tok_train's default of 200M characters: all of it.
echo "training the 8192-token tokenizer on them"
NANOCHAT_BASE_DIR="$OUT" "$PY" -m scripts.tok_train --data "$OUT/shards" --vocab-size 8192 --max-chars 200000000
echo "issue-era data: shards in $OUT/shards (last = validation), tokenizer in $OUT/tokenizer"
