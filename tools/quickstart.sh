#!/usr/bin/env bash
# Quick start: train H-Deformable-DETR for a few iterations on the 8 images
# bundled in demo/data/coco_sample, then evaluate it (COCO box AP) and draw
# its detections. Runs on CPU in a few minutes.
#
#   bash tools/quickstart.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONFIG=configs/quickstart/h_deformable_detr_r50_two_stage_sample.py
WORK_DIR=${1:-work_dirs/quickstart}
PYTHON=${PYTHON:-python3}

echo "==> training $CONFIG (16 iterations) into $WORK_DIR"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --seed 0 \
  --deterministic --no-validate
echo "==> evaluating $WORK_DIR/latest.pth on the sample (COCO box AP)"
"$PYTHON" tools/test.py "$CONFIG" "$WORK_DIR/latest.pth" --eval bbox \
  --work-dir "$WORK_DIR" --show-dir "$WORK_DIR/show" --show-score-thr 0.05
cat <<MSG

Quick start finished.
  log:          $(ls -t "$WORK_DIR"/*.log | head -n 1)
  json log:     $(ls -t "$WORK_DIR"/*.log.json | head -n 1)
  checkpoint:   $WORK_DIR/latest.pth
  drawn boxes:  $WORK_DIR/show/
  metrics:      $(ls -t "$WORK_DIR"/eval_*.json | head -n 1)
MSG
