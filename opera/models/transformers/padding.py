"""Padding masks and positional encodings of a padded image batch."""
import torch
import torch.nn.functional as F


def masks_and_positions(mlvl_feats, img_metas, positional_encoding):
    """Per feature level: where the padding is, and sine positions.

    Args:
        mlvl_feats (list[Tensor]): Each [bs, c, h_l, w_l].
        img_metas (list[dict]): Per image ``img_shape`` (unpadded size) and
            ``batch_input_shape`` (padded size of the batch).
        positional_encoding (nn.Module): Maps a mask [bs, h, w] to
            positions [bs, c, h, w].

    Returns:
        tuple[list[Tensor], list[Tensor]]: Masks [bs, h_l, w_l] (True at
        padding) and positions [bs, c, h_l, w_l].
    """
    if not any(_is_padded(meta) for meta in img_metas):
        # Nothing to mask. Built from the feature shapes alone (no loop over
        # the images), so an exported graph keeps its batch size free.
        masks = [
            feat.new_zeros((feat.size(0), *feat.shape[-2:]), dtype=torch.bool)
            for feat in mlvl_feats
        ]
        return masks, [positional_encoding(mask) for mask in masks]
    batch_size = mlvl_feats[0].size(0)
    input_h, input_w = img_metas[0]['batch_input_shape']
    img_masks = mlvl_feats[0].new_ones((batch_size, input_h, input_w))
    for img_id, meta in enumerate(img_metas):
        img_h, img_w = meta['img_shape'][:2]
        img_masks[img_id, :img_h, :img_w] = 0
    masks, positions = [], []
    for feat in mlvl_feats:
        mask = F.interpolate(
            img_masks[None], size=feat.shape[-2:]).to(torch.bool)[0]
        masks.append(mask)
        positions.append(positional_encoding(mask))
    return masks, positions


def _is_padded(img_meta):
    """Whether the image is smaller than the padded batch it is part of."""
    return (tuple(img_meta['img_shape'][:2]) != tuple(
        img_meta['batch_input_shape']))
