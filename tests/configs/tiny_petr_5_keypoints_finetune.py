# tiny_petr_5_keypoints.py fine-tuned from a checkpoint of the 17-keypoint
# tiny_petr_sample.py: the parameters whose shape depends on the number of
# keypoints K are re-initialised (pose branches, heatmap classifier, the
# refine decoder's K keypoint queries, the pose decoder's sampling offsets
# and attention weights: one point per keypoint); all others are loaded.
# docs/custom_datasets.md explains it; tests/test_finetune.py runs it.
_base_ = ['./tiny_petr_5_keypoints.py']
load_from = 'work_dirs/tiny_petr_sample/latest.pth'
load_from_reinit = [
    'bbox_head.kpt_branches.*',
    'bbox_head.fc_hm.*',
    'bbox_head.transformer.refine_query_embedding.*',
    'bbox_head.transformer.decoder.layers.*.attentions.1.sampling_offsets.*',
    'bbox_head.transformer.decoder.layers.*.attentions.1.attention_weights.*',
]
