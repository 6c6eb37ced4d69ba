#!/usr/bin/env bash
# The GPU reference pipeline at public nanochat's "speedrun" scale (depth 20, ~561M parameters, vocab 65536,
# ~11B tokens = 20 tokens per parameter):
#   bash speedrun.sh
# Arithmetic: 240 FineWeb-EDU shards x ~250M characters ~= 60B characters ~= 12B tokens at ~4.8 characters/token,
# enough for 20 x 561M = 11.2B training tokens.
# Status: base_train runs one process per machine today (multi-GPU DDP is refused until gradients are
# all-reduced), so this runs on ONE CUDA GPU: ~8x the 4 hours that 8 H100s take. On a CPU use train_cpu.sh.
set -euo pipefail
cd "$(dirname "$0")"
DEPTH=${DEPTH:-20}
NUM_SHARDS=${NUM_SHARDS:-240}
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
export WANDB_MODE=${WANDB_MODE:-offline}
RUN=${RUN:-dummy}    # a wandb run name turns logging on

EXTRAS="" bash dev/install.sh
. .venv/bin/activate
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'speedrun.sh needs a CUDA GPU; on a CPU run train_cpu.sh')"

python -m nanochat.dataset -n "$NUM_SHARDS"
python -m scripts.tok_train --data hub --vocab-size 65536 --max-chars 2000000000
python -m scripts.tok_eval --data hub
python -m scripts.base_train --data hub --depth "$DEPTH" --max-seq-len 2048 --device-batch-size 32 \
  --total-batch-size 524288 --target-param-data-ratio 20 --head-dim 128 --run "$RUN"
python -m scripts.base_loss --data hub
echo "base model in $NANOCHAT_BASE_DIR/base_checkpoints/d$DEPTH; chat with it: python -m scripts.chat_web"
