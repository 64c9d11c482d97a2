# tiny_detr_3_classes.py fine-tuned from a checkpoint of the 80-class
# tiny_h_deformable_detr.py: every weight is loaded but the class branches
# (80 -> 3 outputs), which keep their initial values; the log names each
# with both shapes, and any other shape mismatch stops the run.
# docs/custom_datasets.md explains it; tests/test_finetune.py runs it.
_base_ = ['./tiny_detr_3_classes.py']
load_from = 'work_dirs/tiny_h_deformable_detr/latest.pth'
load_from_reinit = ['bbox_head.cls_branches.*']
