#!/usr/bin/env bash
# The GPU reference pipeline at public nanochat's "speedrun" scale (depth 20, ~561M parameters, vocab 65536,
# ~11B tokens = 20 tokens per parameter):
#   bash speedrun.sh
# Arithmetic: 240 FineWeb-EDU shards x ~250M characters ~= 60B characters ~= 12B tokens at ~4.8 characters/token,
# enough for 20 x 561M = 11.2B training tokens.
# Status: base_train runs data-parallel on every GPU of the machine (torchrun, DDP over NCCL; NPROC=1 for one
# GPU). The total batch stays 524,288 tokens = 32 sequences x 2048 tokens x NPROC GPUs x gradient accumulation,
# so NPROC must divide 8 (1, 2, 4 or 8). Public nanochat takes ~4 hours on 8 H100s; this port's GPU speed
# has not been measured (it was developed on CPUs, multi-process code tested with gloo). On a CPU use train_cpu.sh.
set -euo pipefail
cd "$(dirname "$0")"
DEPTH=${DEPTH:-20}
NUM_SHARDS=${NUM_SHARDS:-240}
# Ctrl-C: torchrun passes it to every rank, which finish their step and save a checkpoint; give them time to
# write ~5 GB at depth 20 before torchrun's default 30 s grace period ends in SIGKILL.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-600}
export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
export WANDB_MODE=${WANDB_MODE:-offline}
RUN=${RUN:-dummy}    # a wandb run name turns logging on

EXTRAS="" bash dev/install.sh
. .venv/bin/activate
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'speedrun.sh needs a CUDA GPU; on a CPU run train_cpu.sh')"
# One process per GPU torch can see (honours CUDA_VISIBLE_DEVICES, which nvidia-smi does not).
NPROC=${NPROC:-$(python -c "import torch; print(torch.cuda.device_count())")}

python -m nanochat.dataset -n "$NUM_SHARDS"
python -m scripts.tok_train --data hub --vocab-size 65536 --max-chars 2000000000
python -m scripts.tok_eval --data hub
torchrun --standalone --nproc_per_node="$NPROC" -m scripts.base_train --data hub --depth "$DEPTH" \
  --max-seq-len 2048 --device-batch-size 32 --total-batch-size 524288 --target-param-data-ratio 20 \
  --head-dim 128 --run "$RUN"
torchrun --standalone --nproc_per_node="$NPROC" -m scripts.base_loss --data hub
echo "base model in $NANOCHAT_BASE_DIR/base_checkpoints/d$DEPTH; chat with it: python -m scripts.chat_web"
