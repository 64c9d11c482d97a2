"""Box formats: the ground truth is (x1, y1, x2, y2) in pixels, a DETR
predicts (cx, cy, w, h) as fractions of the image's valid area."""
from mmdet.core import bbox_xyxy_to_cxcywh


def normalised_cxcywh(boxes, img_shape):
    """[n, 4] (x1, y1, x2, y2) pixels -> [n, 4] (cx, cy, w, h) in [0, 1] of
    the valid area ``img_shape`` (h, w, ...)."""
    h, w = img_shape[:2]
    return bbox_xyxy_to_cxcywh(boxes / boxes.new_tensor([w, h, w, h]))
