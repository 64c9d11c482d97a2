"""What the detection and pose criteria share: matching split from scoring.

A criterion scores one query group's predictions at one layer in two steps:
:meth:`SetCriterion.match` pairs queries with ground-truth objects (the
Hungarian assigner, against the objects repeated K times) and
``layer_losses`` scores the predictions given those pairs. Groups whose
pairs come from elsewhere (queries made from the ground truth, queries
given by an auxiliary head with their targets) reuse the scoring alone.

The ground truth of a batch is one ``targets`` dict of per-image lists,
the same kind for both criteria: ``gt_bboxes`` [G, 4] (x1, y1, x2, y2)
pixels, ``gt_labels`` [G], and for poses ``gt_keypoints`` [G, K, 3]
(x, y, v) pixels and ``gt_areas`` [G] pixels^2.
"""
import contextlib
from collections import OrderedDict

import torch
import torch.nn as nn
from mmdet.core import reduce_mean
from torch.utils.hooks import RemovableHandle

from opera.core.bbox import matched_pairs


def image_sizes(img_metas, device):
    """[bs, 2] (w, h) of each image's valid area, in pixels."""
    return torch.tensor([meta['img_shape'][1::-1] for meta in img_metas],
                        dtype=torch.float32,
                        device=device)


def mean_over_gpus(count, device):
    """``count`` averaged over GPUs, at least 1 (a loss normaliser)."""
    count = torch.as_tensor(count, dtype=torch.float32, device=device)
    return reduce_mean(count).clamp(min=1).item()


def image_targets(targets, img_id):
    """One image's entries of the batch ``targets`` (a dict of lists)."""
    return {name: values[img_id] for name, values in targets.items()}


def class_agnostic(targets):
    """``targets`` with every label 0 (the encoder proposals are trained to
    find objects, whatever their class)."""
    return dict(
        targets,
        gt_labels=[torch.zeros_like(labels)
                   for labels in targets['gt_labels']])


def group_losses(losses, group, group_preds, layer_loss):
    """Add one group's losses of every layer to ``losses`` (named ``{d{l}.}
    {name}{suffix}``, ``loss*`` entries weighted, its ``num_matched``);
    return its last layer's extra.

    Args:
        losses (dict): Filled in place.
        group (QueryGroup | FixedTargetGroup): Has ``suffix`` and
            ``loss_weight``.
        group_preds (tuple[Tensor]): Each [num_layers, bs, n_g, ...].
        layer_loss (callable): ``(layer_preds, layer) -> (losses,
            num_matched, extra)``.
    """
    num_layers = group_preds[0].size(0)
    matched = 0
    for layer in range(num_layers):
        layer_losses, num_matched, extra = layer_loss(
            tuple(p[layer] for p in group_preds), layer)
        prefix = '' if layer == num_layers - 1 else f'd{layer}.'
        for name, value in layer_losses.items():
            if 'loss' in name:
                value = value * group.loss_weight
            losses[prefix + name + group.suffix] = value
        matched += num_matched
    losses['num_matched' + group.suffix] = torch.tensor(
        matched / num_layers, device=group_preds[0].device)
    return extra


class SetCriterion(nn.Module):
    """Matching and per-layer scoring of a set of predictions.

    Subclasses say how one image is assigned (:meth:`assign`) and how a
    layer is scored from the matched pairs (``layer_losses(cls_scores,
    preds, targets, img_metas, matches, proposals=False) -> (losses,
    num_matched, extra)``); ``proposals=True`` scores the encoder
    proposals, with the proposal losses where they differ.
    """

    #: Section of the base config that holds the recipe (for errors).
    BASE_CONFIG = None

    def __init__(self):
        super().__init__()
        #: Context managers entered around each image's assignment, by
        #: handle id (see :meth:`register_assign_hook`).
        self.assign_hooks = OrderedDict()

    def required_assigner(self):
        """The assigner, or a clear error for a criterion built without."""
        if self.assigner is None:
            raise RuntimeError(
                f'{type(self).__name__} has no assigner, so it cannot '
                f'compute losses: give model.train_cfg.assigner (a '
                f'criterion built alone: assigner=...), see '
                f'{self.BASE_CONFIG}')
        return self.assigner

    def assign(self, cls_score, pred, targets, img_meta, num_repeats):
        """The assigner's result for one image (``targets``: its entries
        of the batch targets); see the subclasses."""
        raise NotImplementedError

    def match(self, cls_scores, preds, targets, img_metas, num_repeats):
        """Hungarian pairs of every image.

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            preds (Tensor): [bs, Q, D] boxes or poses, normalised.
            targets (dict): The batch's ground truth (see module doc).
            img_metas (list[dict]): Per image, need ``img_shape``.
            num_repeats (int): Each object gets up to K queries.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image, matched query indices
            [n_i] and the indices [n_i] of their objects.
        """
        matches = []
        for img_id, img_meta in enumerate(img_metas):
            gt_labels = targets['gt_labels'][img_id]
            with self.assign_hooks_around(cls_scores.size(1), num_repeats):
                assign_result = self.assign(cls_scores[img_id],
                                            preds[img_id],
                                            image_targets(targets, img_id),
                                            img_meta, num_repeats)
            matches.append(matched_pairs(assign_result, gt_labels.size(0)))
        return matches

    def register_assign_hook(self, hook):
        """Run ``hook(num_queries, num_repeats)``, a context manager, around
        every image's assignment (tools time or profile matching with it).

        Returns:
            torch.utils.hooks.RemovableHandle: ``remove()`` unregisters the
            hook (as for torch's module hooks).
        """
        handle = RemovableHandle(self.assign_hooks)
        self.assign_hooks[handle.id] = hook
        return handle

    def assign_hooks_around(self, num_queries, num_repeats):
        """The registered assign hooks entered as one context."""
        stack = contextlib.ExitStack()
        for hook in self.assign_hooks.values():
            stack.enter_context(hook(num_queries, num_repeats))
        return stack

    def query_group_losses(self, predictions, targets, img_metas,
                           query_groups, fixed_groups=()):
        """Losses of every (decoder layer, query group), weighted and named.

        A matching group is matched by :meth:`match` against the ground
        truth repeated that layer's K; a fixed-target group is supervised by
        its given pairs. Each is scored by ``layer_losses`` and normalised
        by its own targets.

        Args:
            predictions (tuple[Tensor]): Each [num_layers, bs, Q, ...]: the
                matching queries, then each fixed-target group's (the
                arguments of ``layer_losses`` before ``targets``).
            targets (dict): The batch's ground truth (per-image lists).
            img_metas (list[dict]): Per image.
            query_groups (HybridQueryGroups): The matching groups.
            fixed_groups (Sequence[FixedTargetGroup]): This batch's.

        Returns:
            tuple[dict, list]: Losses named ``{d{layer}.}{name}{suffix}``
            (no prefix at the last layer), ``loss*`` entries times the
            group's ``loss_weight``; one ``num_matched{suffix}`` per group
            (supervised queries per layer, averaged over layers, for the
            log); the fixed-target groups' own ``losses`` as they are; and
            each group's last-layer ``extra``.
        """
        num_layers = predictions[0].size(0)
        if num_layers != query_groups.num_layers:
            raise ValueError(f'predictions of {num_layers} layers for query '
                             f'groups of {query_groups.num_layers}')
        per_group = list(
            zip(*(query_groups.split(p, 2, fixed_groups)
                  for p in predictions)))
        losses, extras = dict(), []
        for group, group_preds in zip(query_groups.groups, per_group):
            repeats = query_groups.num_repeats(group)

            def matching_loss(layer_preds, layer, group_repeats=repeats):
                matches = self.match(*layer_preds, targets, img_metas,
                                     group_repeats[layer])
                return self.layer_losses(*layer_preds, targets, img_metas,
                                         matches)

            extras.append(
                group_losses(losses, group, group_preds, matching_loss))
        for group, group_preds in zip(fixed_groups,
                                      per_group[len(query_groups.groups):]):
            group_targets = group.targets_of(targets)

            def given_loss(layer_preds, layer, group=group,
                           group_targets=group_targets):
                return self.layer_losses(*layer_preds, group_targets,
                                         img_metas, group.matches)

            extras.append(
                group_losses(losses, group, group_preds, given_loss))
        for group in fixed_groups:
            taken = sorted(set(group.losses) & set(losses))
            if taken:
                raise ValueError(f'group {group.name!r} names its own losses '
                                 f'{taken} as the decoder\'s are named')
            losses.update(group.losses)
        return losses, extras

    def encoder_losses(self, enc_cls, enc_preds, targets, img_metas,
                       class_agnostic_proposals=True):
        """Losses of the encoder proposals (enc_cls [bs, S, C], enc_preds
        [bs, S, D]): matched once (K = 1) to the objects, as one class if
        ``class_agnostic_proposals`` (Deformable-DETR) or with their
        classes (DINO), named ``enc_*``."""
        if class_agnostic_proposals:
            targets = class_agnostic(targets)
        matches = self.match(enc_cls, enc_preds, targets, img_metas, 1)
        losses, _, _ = self.layer_losses(
            enc_cls, enc_preds, targets, img_metas, matches, proposals=True)
        return {'enc_' + name: value for name, value in losses.items()}
