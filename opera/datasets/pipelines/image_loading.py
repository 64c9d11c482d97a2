"""Image loading that checks the file in the decode it needs anyway."""
import os.path as osp

import mmcv
import numpy as np
from mmdet.datasets.pipelines import LoadImageFromFile as MMDetLoadImage

from ..builder import PIPELINES
from ..data_checks import (decode_image_checked, image_where,
                           unreadable_image)


@PIPELINES.register_module()
class LoadImageFromFile(MMDetLoadImage):
    """mmdet's ``LoadImageFromFile`` for colour images, decoding each file
    once and strictly (:func:`~opera.datasets.data_checks.
    decode_image_checked`): a truncated or corrupt file raises
    ``ImageFileError`` naming it (and ``results['image_context']``, which
    opera's datasets set), where OpenCV would return an image grey from the
    damage on. opera's datasets then skip their own check of the file
    (``checks_image``), so a training image is decoded once, not twice.

    Args:
        to_float32 (bool): Convert the image to float32.
        channel_order (str): 'bgr' (default) or 'rgb'.
        file_client_args (dict): How to read the file (mmcv ``FileClient``).
    """

    # Tells opera's datasets that this step checks the image file, and the
    # keypoint pipeline check that it moves no coordinate.
    checks_image = True
    keeps_geometry = True

    def __init__(self,
                 to_float32=False,
                 channel_order='bgr',
                 file_client_args=dict(backend='disk')):
        super().__init__(
            to_float32=to_float32,
            color_type='color',
            channel_order=channel_order,
            file_client_args=file_client_args)

    def __call__(self, results):
        """Load the image of ``results['img_info']``.

        Returns:
            dict: ``results`` with ``img`` ([H, W, 3] uint8, or float32),
            ``img_shape``, ``ori_shape``, ``filename``, ``ori_filename`` and
            ``img_fields``, as mmdet's step sets them.
        """
        if self.file_client is None:
            self.file_client = mmcv.FileClient(**self.file_client_args)
        name = results['img_info']['filename']
        prefix = results.get('img_prefix')
        filename = osp.join(prefix, name) if prefix is not None else name
        where = image_where(filename, results.get('image_context'))
        try:
            data = self.file_client.get(filename)
        except OSError as error:
            raise unreadable_image(where, error) from error
        img = decode_image_checked(data, where, self.channel_order)
        if self.to_float32:
            img = img.astype(np.float32)
        results['filename'] = filename
        results['ori_filename'] = name
        results['img'] = img
        results['img_shape'] = img.shape
        results['ori_shape'] = img.shape
        results['img_fields'] = ['img']
        return results
