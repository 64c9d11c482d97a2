"""Queries batched per person, regrouped into batches per image.

PETR's refine decoder batches its queries per person: the K keypoint queries
of a person attend to each other, and to nobody else. In its deformable
cross-attention, though, every person of an image samples the same memory.
Batching that attention per person would project the image's whole memory
(about 20k positions at 800x1216) once per person and layer. Regrouped into
one batch entry per image, the persons' queries sample the memory of their
image, projected once: deformable attention treats every query on its own,
so the outputs are the same.

:class:`PerImageQueries` holds where each person goes: person ``i`` of image
``b`` takes slot ``b * max_persons + r``, ``r`` its rank among the persons of
``b`` (in the order given). Images with fewer persons than the most crowded
one leave their last slots empty (zero queries, outputs dropped).
"""
import torch


class PerImageQueries:
    """Slots of persons in per-image batches.

    Args:
        img_inds (Tensor): [n] long, the image (value batch entry) of each
            person (query batch entry), in any order.
        num_images (int): Images of the batch.
    """

    def __init__(self, img_inds, num_images):
        if img_inds.dim() != 1 or img_inds.dtype != torch.long:
            raise ValueError(f'img_inds must be a 1-D long tensor, got '
                             f'{img_inds.dtype} of shape '
                             f'{tuple(img_inds.shape)}')
        # Rank among the persons of the same image: a running count over a
        # one-hot [n, num_images], in the given order.
        is_image = img_inds[:, None] == torch.arange(
            num_images, device=img_inds.device)
        if not bool(is_image.any(1).all()):
            raise ValueError(
                f'img_inds must lie in [0, {num_images}) (one entry per '
                f'image of the batch), got {sorted(set(img_inds.tolist()))}')
        # long before cumsum: ONNX CumSum takes no booleans (export).
        rank = (is_image.long().cumsum(0) - 1).gather(
            1, img_inds[:, None])[:, 0]
        counts = is_image.sum(0)
        self.num_images = num_images
        self.max_persons = int(counts.max())
        self.slots = img_inds * self.max_persons + rank

    @property
    def num_persons(self):
        return self.slots.numel()

    def to_images(self, per_person):
        """[n, k, ...] per person -> [num_images, max_persons * k, ...],
        zeros in the empty slots."""
        if per_person.size(0) != self.num_persons:
            raise ValueError(f'expected {self.num_persons} persons, got a '
                             f'tensor of shape {tuple(per_person.shape)}')
        num_per_person, rest = per_person.size(1), per_person.shape[2:]
        slots = per_person.new_zeros(
            (self.num_images * self.max_persons, num_per_person, *rest))
        slots = slots.index_copy(0, self.slots, per_person)
        return slots.view(self.num_images, self.max_persons * num_per_person,
                          *rest)

    def to_persons(self, per_image, num_per_person):
        """[num_images, max_persons * k, ...] -> [n, k, ...] with
        ``k = num_per_person``: the inverse of :meth:`to_images` on the
        filled slots."""
        slots = per_image.reshape(self.num_images * self.max_persons,
                                  num_per_person, *per_image.shape[2:])
        return slots.index_select(0, self.slots)
