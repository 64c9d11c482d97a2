"""The datasets inside mmdet's dataset wrappers.

``ConcatDataset`` holds ``datasets``; ``RepeatDataset``,
``ClassBalancedDataset`` and ``MultiImageMixDataset`` hold one ``dataset``.
Checks that compare a model with its data (e.g. the keypoint layout) look
at the datasets inside, which carry the attributes the wrappers lack.
"""


def inner_datasets(dataset):
    """The datasets that ``dataset`` wraps, however deeply, in order.

    Args:
        dataset (Dataset): A dataset or an mmdet dataset wrapper.

    Returns:
        list[Dataset]: The wrapped datasets; ``[dataset]`` for a dataset
        that wraps none.
    """
    if hasattr(dataset, 'datasets'):
        return [
            inner for wrapped in dataset.datasets
            for inner in inner_datasets(wrapped)
        ]
    if hasattr(dataset, 'dataset'):
        return inner_datasets(dataset.dataset)
    return [dataset]
