#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (or per CPU slot
# on machines without GPUs, where the gloo backend is used).
#
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]
#
# Environment: PORT (default 29500), NNODES (1), NODE_RANK (0),
# MASTER_ADDR (127.0.0.1).
set -e
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NUM_PROCESSES [train.py options]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
python -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" \
  --master_port="${PORT:-29500}" \
  "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
