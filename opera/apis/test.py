"""Inference loops over a data loader, for one process or many.

mmdet's loops take any ``(a, b)`` result tuple for ``(boxes, masks)`` and
RLE-encode ``b``; pose models return ``(boxes, keypoints)``, whose keypoint
arrays must pass through untouched, so both loops are ours. Ours also
collect results through ``torch.distributed.all_gather_object`` (gloo and
nccl) instead of CUDA tensors, and run on CPU under an ``MMDataParallel``
without devices.
"""
import os.path as osp

import mmcv
import numpy as np
import torch
import torch.distributed as dist
from mmcv.image import tensor2imgs
from mmcv.runner import get_dist_info
from mmdet.core import encode_mask_results

__all__ = ['single_gpu_test', 'multi_gpu_test', 'collect_results']


def single_gpu_test(model,
                    data_loader,
                    show=False,
                    out_dir=None,
                    show_score_thr=0.3):
    """Run inference in one process, optionally drawing the results.

    Args:
        model (nn.Module): The model, wrapped in ``MMDataParallel``.
        data_loader (DataLoader): Test data loader (any batch size).
        show (bool): Show each drawn image in a window.
        out_dir (str, optional): Write each drawn image here, named after
            the image file.
        show_score_thr (float): Draw only results scoring above this.

    Returns:
        list: One result per dataset item, in dataset order.
    """
    model.eval()
    dataset = data_loader.dataset
    palette = getattr(dataset, 'PALETTE', None)
    progress = mmcv.ProgressBar(len(dataset))
    results = []
    for data in data_loader:
        with torch.no_grad():
            batch_results = model(return_loss=False, rescale=True, **data)
        if show or out_dir:
            _draw_batch(model.module, data, batch_results, palette, show,
                        out_dir, show_score_thr)
        results.extend(_encode_masks(batch_results))
        for _ in range(len(batch_results)):
            progress.update()
    return results


def _draw_batch(model, data, batch_results, palette, show, out_dir,
                score_thr):
    """Draw each image of a batch at its original size with its results."""
    img = data['img'][0]
    img = img if isinstance(img, torch.Tensor) else img.data[0]
    img_metas = data['img_metas'][0].data[0]
    images = tensor2imgs(img, **img_metas[0]['img_norm_cfg'])
    for image, meta, result in zip(images, img_metas, batch_results):
        h, w = meta['img_shape'][:2]
        ori_h, ori_w = meta['ori_shape'][:2]
        image = mmcv.imresize(image[:h, :w], (ori_w, ori_h))
        out_file = osp.join(out_dir, meta['ori_filename']) if out_dir else None
        model.show_result(
            image,
            result,
            bbox_color=palette,
            text_color=palette,
            mask_color=palette,
            show=show,
            out_file=out_file,
            score_thr=score_thr)


def multi_gpu_test(model, data_loader, tmpdir=None, gpu_collect=False):
    """Run inference in every process and return all results in order.

    Each process must iterate over its share of the dataset as given by
    mmdet's ``DistributedSampler`` (``shuffle=False``).

    Args:
        model (nn.Module): The (distributed) model to test.
        data_loader (DataLoader): This process's data loader.
        tmpdir (str, optional): Unused; kept for mmdet's signature. Results
            travel through the process group instead of files.
        gpu_collect (bool): Unused for the same reason.

    Returns:
        list: One result per dataset item, in dataset order, in every process.
    """
    model.eval()
    dataset = data_loader.dataset
    rank, world_size = get_dist_info()
    progress = mmcv.ProgressBar(len(dataset)) if rank == 0 else None
    results = []
    for data in data_loader:
        with torch.no_grad():
            batch_results = model(return_loss=False, rescale=True, **data)
        results.extend(_encode_masks(batch_results))
        if progress is not None:
            for _ in range(len(batch_results) * world_size):
                progress.update()
    return collect_results(results, len(dataset))


def _encode_masks(batch_results):
    """RLE-encode instance masks so results are small to keep and send.

    ``(boxes, masks)`` and ``(boxes, keypoints)`` results are both tuples;
    keypoint results hold one [m, K, 3] array per class, masks a list of
    [H, W] arrays per class, and only masks are encoded.
    """
    if isinstance(batch_results[0], tuple):
        return [(bboxes, second if _is_keypoint_result(second) else
                 encode_mask_results(second))
                for bboxes, second in batch_results]
    for result in batch_results:
        if isinstance(result, dict) and 'ins_results' in result:
            bboxes, masks = result['ins_results']
            result['ins_results'] = (bboxes, encode_mask_results(masks))
    return batch_results


def _is_keypoint_result(per_class):
    return all(isinstance(a, np.ndarray) and a.ndim == 3 for a in per_class)


def collect_results(rank_results, size):
    """Gather every process's results and restore dataset order.

    mmdet's ``DistributedSampler`` pads the index list to a multiple of the
    world size and gives rank ``r`` the indices ``r, r + world_size, ...``,
    so taking one result from each rank in turn restores the order; the
    padding at the end is then cut off.

    Args:
        rank_results (list): This process's results, in sampler order.
        size (int): Length of the dataset.

    Returns:
        list: ``size`` results in dataset order.
    """
    _, world_size = get_dist_info()
    if world_size == 1:
        return rank_results[:size]
    all_results = [None] * world_size
    dist.all_gather_object(all_results, rank_results)
    ordered = [
        result for same_step in zip(*all_results) for result in same_step
    ]
    return ordered[:size]
