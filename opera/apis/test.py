"""Inference loops over a data loader, for one process or many.

``single_gpu_test`` is mmdet's: it already runs on CPU under an
``MMDataParallel`` without devices. ``multi_gpu_test`` is ours: mmdet's
collects results through CUDA tensors, this one through
``torch.distributed.all_gather_object``, which gloo and nccl both support.
"""
import mmcv
import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info
from mmdet.apis import single_gpu_test
from mmdet.core import encode_mask_results

__all__ = ['single_gpu_test', 'multi_gpu_test', 'collect_results']


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
    """RLE-encode instance masks so results are small enough to send."""
    if isinstance(batch_results[0], tuple):
        return [(bboxes, encode_mask_results(masks))
                for bboxes, masks in batch_results]
    for result in batch_results:
        if isinstance(result, dict) and 'ins_results' in result:
            bboxes, masks = result['ins_results']
            result['ins_results'] = (bboxes, encode_mask_results(masks))
    return batch_results


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
