#!/usr/bin/env bash
# The GPU reference pipeline at public nanochat's "speedrun" scale: every stage, data to chat model, depth 20.
#   bash speedrun.sh             # on a machine with CUDA GPUs (torchrun on all of them)
#   bash speedrun.sh --dry-run   # print every command with the arithmetic behind it; needs no GPU, runs nothing
# Knobs: DEPTH (20), NPROC (GPUs to use, default all that torch sees; must divide 8), NUM_SHARDS (derived),
#        RUN (wandb run name; dummy = off), NANOCHAT_BASE_DIR. On a CPU use train_cpu.sh.
# Multi-process training is tested on 2 CPU processes over gloo (tests/test_ddp.py); this port has not run on a
# GPU yet, so its GPU speed is unmeasured (public nanochat takes ~4 hours on 8 H100s).
set -euo pipefail
cd "$(dirname "$0")"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "error: unknown argument $arg (use --dry-run or none)" >&2; exit 2 ;;
  esac
done

DEPTH=${DEPTH:-20}
VOCAB=65536
SEQ=2048
DEVICE_BATCH=32
TOTAL_BATCH=524288                      # tokens per optimizer step, as public nanochat
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
export WANDB_MODE=${WANDB_MODE:-offline}
RUN=${RUN:-dummy}
# Ctrl-C: torchrun passes it to every rank, which finish their step and save; give them time to write ~5 GB at
# depth 20 before torchrun's default 30 s grace period ends in SIGKILL.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-600}

if [ "$DRY_RUN" = 1 ]; then
  NPROC=${NPROC:-8}
else
  if [ ! -e /dev/nvidia0 ] && ! command -v nvidia-smi >/dev/null; then
    echo "error: speedrun.sh needs a CUDA GPU and this machine has none (no /dev/nvidia0, no nvidia-smi); on a CPU run: bash train_cpu.sh (or bash speedrun.sh --dry-run to see the commands)" >&2
    exit 1
  fi
  EXTRAS="" bash dev/install.sh
  . .venv/bin/activate
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: speedrun.sh needs a CUDA GPU and torch sees none here; on a CPU run: bash train_cpu.sh (or bash speedrun.sh --dry-run to see the commands)')"
  # One process per GPU torch can see (honours CUDA_VISIBLE_DEVICES, which nvidia-smi does not).
  NPROC=${NPROC:-$(python -c "import torch; print(torch.cuda.device_count())")}
fi
case "$NPROC" in 1|2|4|8) ;; *) echo "error: NPROC=$NPROC must be 1, 2, 4 or 8 (it divides the batch)" >&2; exit 2 ;; esac

# --- the arithmetic (integers; the scripts print the exact figures at start-up) --------------------------------
DIM=$((DEPTH * 64))
PARAMS=$((2 * VOCAB * DIM + 12 * DEPTH * DIM * DIM))        # embedding + lm_head + (4 d^2 attention + 8 d^2 MLP)
TOKENS=$((20 * PARAMS))                                     # Chinchilla: 20 tokens per parameter
STEPS=$((TOKENS / TOTAL_BATCH))
ACCUM=$((TOTAL_BATCH / (DEVICE_BATCH * SEQ * NPROC)))
NUM_SHARDS=${NUM_SHARDS:-$(( (TOKENS * 48 / 10 / 250000000) * 11 / 10 + 1 ))}  # 4.8 chars/token, 250M chars/shard, +10%
TORCHRUN="torchrun --standalone --nproc_per_node=$NPROC"

run() {   # print a stage's command and why; run it unless --dry-run
  local why=$1; shift
  echo
  echo "# $why"
  echo "$*"
  [ "$DRY_RUN" = 1 ] || "$@"
}

echo "depth $DEPTH: model dim $DEPTH x 64 = $DIM, $((DIM / 128)) heads of 128; parameters ~ 2 x $VOCAB x $DIM + 12 x $DEPTH x $DIM^2 = $PARAMS"
echo "pretraining: 20 tokens/parameter = $TOKENS tokens = $STEPS steps of $TOTAL_BATCH tokens ($DEVICE_BATCH x $SEQ x $NPROC GPUs x $ACCUM accumulation)"
echo "data: $TOKENS tokens x 4.8 characters/token / 250M characters per shard, +10% = $NUM_SHARDS FineWeb-EDU shards"

run "report: start a new one" python -m nanochat.report reset
run "data: $NUM_SHARDS training shards + the validation shard" python -m nanochat.dataset -n "$NUM_SHARDS"
run "tokenizer: BPE with $VOCAB tokens on 2B characters" python -m scripts.tok_train --data hub --vocab-size $VOCAB --max-chars 2000000000
run "tokenizer: compression next to GPT-4's" python -m scripts.tok_eval --data hub
run "pretraining: $STEPS steps on $NPROC GPUs" $TORCHRUN -m scripts.base_train --data hub --depth "$DEPTH" \
  --max-seq-len $SEQ --device-batch-size $DEVICE_BATCH --total-batch-size $TOTAL_BATCH --target-param-data-ratio 20 \
  --head-dim 128 --run "$RUN"
run "bits per byte on train and val" $TORCHRUN -m scripts.base_loss --data hub
run "CORE, every item (one process)" python -m scripts.base_eval --device-type cuda
run "mid-training: one epoch of the chat mixture at 25x its CPU sizes" $TORCHRUN -m scripts.mid_train \
  --device-batch-size $DEVICE_BATCH --total-batch-size $TOTAL_BATCH --mixture-scale 25 --run "$RUN"
run "chat_eval of the mid model (one process)" python -m scripts.chat_eval -i mid --device-type cuda
run "SFT: one epoch, 32 conversations per step ($((32 / (4 * NPROC))) x 4 x $NPROC GPUs)" $TORCHRUN -m scripts.chat_sft \
  --device-batch-size 4 --examples-per-step 32 --mixture-scale 5 --run "$RUN"
run "chat_eval of the sft model" python -m scripts.chat_eval -i sft --device-type cuda
run "RL: 500 steps of 16 questions x 16 samples (one process; chat_rl does not use torchrun)" python -m scripts.chat_rl \
  --device-type cuda --num-iterations 500 --examples-per-step 16 --num-samples 16 --max-tokens 256 --run "$RUN"
run "chat_eval of the rl model" python -m scripts.chat_eval -i rl --device-type cuda
run "the report" python -m nanochat.report generate
[ "$DRY_RUN" = 1 ] && echo && echo "(dry run: nothing was run)" || echo "chat with it: python -m scripts.chat_web"
