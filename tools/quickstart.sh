#!/usr/bin/env bash
# Quick start: train a small hybrid-matching DETR and its one-to-one twin
# (same model, seed and schedule, no one-to-many branch) on images bundled
# in demo/data/coco_sample, evaluate both on the same images (COCO AP,
# logged during training), draw both models' results as PNGs and plot both
# runs' loss and AP curves in one figure, printing the final APs side by side.
#
#   bash tools/quickstart.sh [--pose] [WORK_DIR] [KEY=VALUE ...]
#
# Detection (default): H-Deformable-DETR vs Deformable-DETR, box AP, on 2 of
# the 8 images (configs/quickstart/h_deformable_detr_r18_sample.py).
# --pose: H-PETR vs PETR on the 2 persons of images 30752 and 183872,
# keypoint AP, skeletons drawn (configs/quickstart/h_petr_r18_sample.py).
# KEY=VALUE pairs go to both trainings as --cfg-options (e.g. a shorter
# schedule: runner.max_epochs=10 evaluation.interval=5). SEED=N picks the
# seed (default 0); PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SEED=${SEED:-0}
TASK=detection
WORK_DIR=work_dirs/quickstart
if [[ "${1:-}" == "--pose" ]]; then
  TASK=pose
  WORK_DIR=work_dirs/quickstart_pose
  shift
fi
if [[ $# -gt 0 && $1 != *=* ]]; then  # a work dir, not a KEY=VALUE
  WORK_DIR=$1
  shift
fi
CFG_OPTIONS=("$@")
SAMPLE_IMAGES=demo/data/coco_sample/images
if [[ $TASK == detection ]]; then
  HYBRID=configs/quickstart/h_deformable_detr_r18_sample.py
  ONE2ONE=configs/quickstart/deformable_detr_r18_sample.py
  NAMES=(H-Deformable-DETR Deformable-DETR)
  METRIC=bbox_mAP
  # The images of the configs' annotation file (instances_quickstart.json).
  DRAWN_IMAGES=(000000418049.jpg 000000551757.jpg)
else
  HYBRID=configs/quickstart/h_petr_r18_sample.py
  ONE2ONE=configs/quickstart/petr_r18_sample.py
  NAMES=(H-PETR PETR)
  METRIC=keypoints_mAP
  # The images of the configs' annotation file
  # (person_keypoints_quickstart.json).
  DRAWN_IMAGES=(000000030752.jpg 000000183872.jpg)
fi

train() {  # NAME CONFIG
  echo "==> training $1 ($2) into $WORK_DIR/$1"
  "$PYTHON" tools/train.py "$2" --work-dir "$WORK_DIR/$1" --seed "$SEED" \
    --deterministic ${CFG_OPTIONS[@]+--cfg-options "${CFG_OPTIONS[@]}"}
}

newest_json_log() {  # RUN_DIR
  ls -t "$1"/*.log.json | head -n 1
}

draw() {  # NAME CONFIG: the trained images, one PNG each
  echo "==> drawing $1's results into $WORK_DIR/drawn/$1/"
  "$PYTHON" demo/image_demo.py "$WORK_DIR/images" "$2" \
    "$WORK_DIR/$1/latest.pth" --out-file "$WORK_DIR/drawn/$1" --score-thr 0.3
}

train "${NAMES[0]}" "$HYBRID"
train "${NAMES[1]}" "$ONE2ONE"
mkdir -p "$WORK_DIR/images"
for name in "${DRAWN_IMAGES[@]}"; do
  ln -sf "$PWD/$SAMPLE_IMAGES/$name" "$WORK_DIR/images/$name"
done
draw "${NAMES[0]}" "$HYBRID"
draw "${NAMES[1]}" "$ONE2ONE"
echo "==> plotting both runs into $WORK_DIR/curves.png"
"$PYTHON" tools/analysis_tools/analyze_logs.py plot_curve \
  "$(newest_json_log "$WORK_DIR/${NAMES[0]}")" \
  "$(newest_json_log "$WORK_DIR/${NAMES[1]}")" \
  --keys loss "$METRIC" --legend "${NAMES[@]}" \
  --title "$TASK on the bundled sample, seed $SEED" \
  --out "$WORK_DIR/curves.png"
cat <<MSG

Quick start finished (the table above: last loss and $METRIC of each run,
evaluated on the training images).
  runs:     $WORK_DIR/${NAMES[0]}/ and $WORK_DIR/${NAMES[1]}/ (logs, config,
            latest.pth)
  curves:   $WORK_DIR/curves.png
  drawings: $WORK_DIR/drawn/${NAMES[0]}/*.png and $WORK_DIR/drawn/${NAMES[1]}/*.png
MSG
