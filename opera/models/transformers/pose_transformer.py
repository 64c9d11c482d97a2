"""PETR transformer: deformable encoder, pose decoder, refine decoder.

- Encoder: the Deformable-DETR encoder over 4 levels (the input flattening
  and the encoder call are :mod:`.deformable_encoder`'s, shared with
  :class:`.DeformableDetrTransformer`).
- Two-stage pose proposals: every encoder position is a point proposal (its
  grid cell centre); a keypoint branch adds 2K offsets to it in logit space,
  a class branch scores it. The top-scoring proposals give the decoder's
  initial reference poses (detached).
- Pose decoder (:class:`PETRPoseDecoder`): self-attention between queries,
  :class:`PoseDeformableAttention` around each query's pose, FFN; each layer
  refines the pose in logit space (the loop is :func:`.run_refining_layers`,
  shared with the Deformable-DETR decoder).
- Refine ("joint") decoder: K keypoint queries per selected person, each with
  a 2-D reference (its keypoint from the pose decoder), refined per layer;
  each layer's keypoints, attached to its branch, are its predictions.
  Its cross-attention samples each image's memory, projected once per image,
  for all persons of the image.
- Heatmap memory (training only): the stride-8 level of the encoder memory
  through one more single-level deformable encoder layer.
- Queries at given poses (training groups made from the ground truth, e.g.
  pose denoising): :meth:`PETRTransformer.queries_from_poses`, with
  ``given_pose_queries=True``.

The encoder, the proposals and the pose decoder are three stages, the same
as :class:`.DeformableDetrTransformer`'s: ``encode``, ``pre_decoder`` (the
matching queries, a :class:`.DecoderQueries`) and ``forward_decoder``; a
head may add query groups between the second and the third. ``forward``
runs the three in a row.
"""
import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import (TransformerLayerSequence,
                                         build_transformer_layer_sequence)
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.runner import BaseModule
from mmdet.models.utils.transformer import inverse_sigmoid

from ..builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .decoder_queries import DecoderQueries
from ..attention.deformable_attention import \
    MultiScaleDeformableAttention as OperaMultiScaleDeformableAttention
from .deformable_encoder import (EncoderStage, check_query_embed, encode,
                                 first_level, memory_inputs, num_proposals)
from .dino_transformer import box_sine_embedding
from .layer_cfgs import StrictLayerSequence
from .per_image_queries import PerImageQueries
from .refine import run_refining_layers
from .deformable_detr_transformer import DeformableDetrTransformerDecoder


def check_refine_decoder(refine_decoder):
    """What :meth:`PETRTransformer.forward_refine` needs of the refine
    decoder: every layer's keypoints (``return_intermediate``, they are the
    predictions the refine losses train), and cross-attentions that take
    persons' queries against per-image memory (``per_image_queries``), as
    ``opera.MultiScaleDeformableAttention`` does."""
    if not isinstance(refine_decoder, DeformableDetrTransformerDecoder):
        raise TypeError(
            f'refine_decoder must be an opera.DeformableDetrTransformerDecoder'
            f', got {type(refine_decoder).__name__}')
    if not refine_decoder.return_intermediate:
        raise ValueError(
            'refine_decoder needs return_intermediate=True: the refine '
            'losses train the keypoints of every refine layer')
    for index, layer in enumerate(refine_decoder.layers):
        attention_ops = [
            op for op in layer.operation_order
            if op in ('self_attn', 'cross_attn')
        ]
        for op, attention in zip(attention_ops, layer.attentions):
            if op == 'cross_attn' and not isinstance(
                    attention, OperaMultiScaleDeformableAttention):
                raise ValueError(
                    f'refine_decoder layer {index}: the cross-attention must '
                    f'be opera.MultiScaleDeformableAttention (it samples '
                    f'each image\'s memory for that image\'s persons), got '
                    f'{type(attention).__module__}.'
                    f'{type(attention).__name__}')


@TRANSFORMER_LAYER_SEQUENCE.register_module()
class PETRPoseDecoder(StrictLayerSequence, TransformerLayerSequence):
    """Pose decoder of PETR: refines a reference pose per query and layer.

    Args:
        num_keypoints (int): K.
        with_cp (bool): Checkpoint every layer in training (see
            :mod:`.layer_checkpoint`).
        **kwargs: ``transformerlayers``, ``num_layers``, ... as in mmcv's
            ``TransformerLayerSequence``.
    """

    def __init__(self, *args, num_keypoints=17, with_cp=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_keypoints = num_keypoints
        self.with_cp = with_cp

    def forward(self,
                query,
                reference_poses,
                valid_ratios,
                kpt_branches,
                self_attn_mask=None,
                **kwargs):
        """Run the layers, refining the poses after each
        (:func:`.run_refining_layers`).

        Args:
            query (Tensor): [nq, bs, c].
            reference_poses (Tensor): [bs, nq, 2K] initial poses in [0, 1]
                of the valid image area (detached).
            valid_ratios (Tensor): [bs, num_levels, 2].
            kpt_branches (Sequence[nn.Module]): One pose-delta branch per
                layer (first ``num_layers`` used).
            self_attn_mask (Tensor | QueryGroupMask | None): Mask of every
                layer's self-attention (the query groups).
            **kwargs: Passed to every layer (``query_pos``, ``value``,
                ``key_padding_mask``, ``spatial_shapes``, ...).

        Returns:
            tuple[Tensor, Tensor]: States [num_layers, bs, nq, c] and each
            layer's pose [num_layers, bs, nq, 2K]: built on the previous
            layer's detached pose, so it trains only this layer's branch.
        """
        if reference_poses.size(-1) != 2 * self.num_keypoints:
            raise ValueError(
                f'reference_poses {tuple(reference_poses.shape)} are not '
                f'poses of num_keypoints={self.num_keypoints}')
        outputs, poses, _ = run_refining_layers(
            self.layers,
            query,
            reference_poses,
            valid_ratios,
            branches=kpt_branches,
            attached=True,
            self_attn_mask=self_attn_mask,
            with_cp=self.with_cp,
            batch_first=True,
            **kwargs)
        return torch.stack(outputs), torch.stack(poses)


@TRANSFORMER.register_module()
class PETRTransformer(EncoderStage, BaseModule):
    """Two-stage PETR transformer.

    Args:
        encoder (dict): Deformable encoder (``opera.DetrTransformerEncoder``).
        decoder (dict): Pose decoder (:class:`PETRPoseDecoder`).
        hm_encoder (dict): Single-level encoder of the heatmap branch.
        refine_decoder (dict): Refine decoder, an
            ``opera.DeformableDetrTransformerDecoder`` with
            ``return_intermediate=True`` (every layer's keypoints are
            trained).
        num_keypoints (int): K.
        num_feature_levels (int): Levels of the encoder.
        proposal_range (tuple[float]): Point proposals outside this open
            range (normalised) are invalid and never selected.
        given_pose_queries (bool): Add ``pose_position``, the MLP that
            makes the positional query of a given pose
            (:meth:`queries_from_poses`, needed by query groups made from
            poses such as ``opera.PoseDenoisingQueries``); off, the
            transformer has exactly PETR's parameters.
        init_cfg (dict | None): Unused; see :meth:`init_weights`.
    """

    reference_kind = 'pose'

    def __init__(self,
                 encoder,
                 decoder,
                 hm_encoder,
                 refine_decoder,
                 num_keypoints=17,
                 num_feature_levels=4,
                 proposal_range=(0.01, 0.99),
                 given_pose_queries=False,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.num_keypoints = num_keypoints
        self.num_feature_levels = num_feature_levels
        self.proposal_range = proposal_range
        # Modules with parameters are created in the order of Opera's PETR
        # transformer, so that a seed gives its weights.
        self.encoder = build_transformer_layer_sequence(encoder)
        self.decoder = build_transformer_layer_sequence(decoder)
        self.embed_dims = self.encoder.embed_dims
        self.level_embeds = nn.Parameter(
            torch.empty(num_feature_levels, self.embed_dims))
        self.enc_output = nn.Linear(self.embed_dims, self.embed_dims)
        self.enc_output_norm = nn.LayerNorm(self.embed_dims)
        self.refine_query_embedding = nn.Embedding(num_keypoints,
                                                   self.embed_dims * 2)
        self.hm_encoder = build_transformer_layer_sequence(hm_encoder)
        self.refine_decoder = build_transformer_layer_sequence(refine_decoder)
        check_refine_decoder(self.refine_decoder)
        # Created last: without it a seed gives PETR's weights.
        self.pose_position = None
        if given_pose_queries:
            self.pose_position = nn.Sequential(
                nn.Linear(2 * self.embed_dims, self.embed_dims), nn.ReLU(),
                nn.Linear(self.embed_dims, self.embed_dims))

    def init_weights(self):
        """Xavier everywhere, then each attention's own initialisation
        (mmcv's deformable attention and :class:`.PoseDeformableAttention`,
        its subclass)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.normal_(self.level_embeds)
        nn.init.normal_(self.refine_query_embedding.weight)

    def point_proposals(self, memory, levels):
        """Grid-cell centres of every level as normalised point proposals.

        Args:
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.

        Returns:
            tuple[Tensor, Tensor]: Projected memory [bs, S, c] (zero at
            invalid positions) and proposals in logit space [bs, S, 2]
            (+inf at padding and outside ``proposal_range``).
        """
        mask = levels['mask']
        bs = memory.size(0)
        proposals, start = [], 0
        for height, width in levels['level_sizes']:
            level_mask = mask[:, start:start + height * width].view(
                bs, height, width)
            valid_h = (~level_mask[:, :, 0]).sum(1)
            valid_w = (~level_mask[:, 0, :]).sum(1)
            grid_y, grid_x = torch.meshgrid(
                torch.arange(height, dtype=memory.dtype, device=memory.device),
                torch.arange(width, dtype=memory.dtype, device=memory.device),
                indexing='ij')
            centres = torch.stack([grid_x, grid_y], -1).view(1, -1, 2) + 0.5
            valid_size = torch.stack([valid_w, valid_h], -1).view(bs, 1, 2)
            proposals.append(centres / valid_size)
            start += height * width
        proposals = torch.cat(proposals, 1)
        low, high = self.proposal_range
        valid = ((proposals > low) & (proposals < high)).all(-1, keepdim=True)
        invalid = mask.unsqueeze(-1) | ~valid
        proposals = inverse_sigmoid(proposals).masked_fill(
            invalid, float('inf'))
        output_memory = memory.masked_fill(invalid, 0.)
        return self.enc_output_norm(self.enc_output(output_memory)), proposals

    def propose_poses(self, memory, levels, num_queries, proposal_ranks,
                      cls_branch, kpt_branch):
        """Score every point proposal, regress its pose, keep the top ones.

        Args:
            memory (Tensor): [bs, S, c].
            levels (dict): See :mod:`.deformable_encoder`.
            num_queries (int): Proposals to keep (one per active query).
            proposal_ranks (Tensor | None): [num_queries] long, the rank of
                the proposal each query takes (None: rank i for query i).
            cls_branch (nn.Module): Proposal class branch.
            kpt_branch (nn.Module): Proposal pose branch (2K offsets).

        Returns:
            tuple[Tensor, Tensor, Tensor]: Initial poses [bs, nq, 2K] in
            [0, 1], best first (detached); proposal class logits
            [bs, S, C]; proposal poses [bs, S, 2K] in [0, 1].
        """
        num_kept = num_proposals(num_queries, proposal_ranks, levels)
        output_memory, points = self.point_proposals(memory, levels)
        enc_cls = cls_branch(output_memory)
        enc_pose = kpt_branch(output_memory) + points.repeat(
            1, 1, self.num_keypoints)
        # Column 0 scores "person": proposals are trained class-agnostic.
        topk = enc_cls[..., 0].topk(num_kept, dim=1)[1]
        if proposal_ranks is not None:
            topk = topk[:, proposal_ranks]
        init_poses = enc_pose.gather(
            1,
            topk.unsqueeze(-1).expand(-1, -1, enc_pose.size(-1))).detach()
        return init_poses.sigmoid(), enc_cls, enc_pose.sigmoid()

    def heatmap_memory(self, memory, levels):
        """The first (stride-8) level through the heatmap encoder.

        Returns:
            Tensor: [bs, h, w, c] on the first level's grid.
        """
        height, width = levels['level_sizes'][0]
        hm_memory = encode(self.hm_encoder, first_level(memory, levels))
        return hm_memory.reshape(memory.size(0), height, width, -1)

    def pre_decoder(self, memory, levels, query_embed, num_queries,
                    proposal_ranks=None, kpt_branches=None,
                    cls_branches=None):
        """Stage 2: the matching queries, at the top pose proposals
        (:meth:`propose_poses`), position and content from the learned
        query embedding.

        Args:
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            query_embed (Tensor): [nq, 2c] learned query position and
                content (one row per active query).
            num_queries (int): nq, the queries (and pose proposals) to make.
            proposal_ranks (Tensor | None): [nq] long, the proposal rank of
                each query (None: rank i feeds query i).
            kpt_branches, cls_branches (nn.ModuleList): The head's pose and
                class branches, one per decoder layer plus the proposal
                branch last (required).

        Returns:
            tuple: :class:`.DecoderQueries` (reference: the initial poses
            [bs, nq, 2K], detached), proposal class logits [bs, S, C] and
            proposal poses [bs, S, 2K] in [0, 1].
        """
        if kpt_branches is None or cls_branches is None:
            raise TypeError('PETRTransformer needs kpt_branches and '
                            'cls_branches')
        check_query_embed(query_embed, num_queries)
        num_dec = self.decoder.num_layers
        init_poses, enc_cls, enc_poses = self.propose_poses(
            memory, levels, num_queries, proposal_ranks,
            cls_branches[num_dec], kpt_branches[num_dec])
        query_pos, query = query_embed.split(self.embed_dims, dim=1)
        bs = memory.size(0)
        queries = DecoderQueries(
            query.unsqueeze(0).expand(bs, -1, -1),
            query_pos.unsqueeze(0).expand(bs, -1, -1), init_poses)
        return queries, enc_cls, enc_poses

    def queries_from_poses(self, poses, content):
        """Decoder queries at given poses (a group made from the ground
        truth): the poses (detached) as references, ``content``, and a
        positional query made from each pose.

        PETR's matching queries take their positions from a learned
        embedding, one row per query, which carries no geometry: the pose
        reaches the decoder through the reference (where the pose attention
        samples). A query made from a pose has no such row, so its position
        is made from the pose: ``pose_position`` (Linear 2c -> c, ReLU,
        Linear c -> c) on the sine embedding of the box around its K
        keypoints (cx, cy, w, h; the embedding DINO's decoder gives its
        boxes, :func:`.box_sine_embedding`). The box, not all 2K
        coordinates, keeps the projection small (2c inputs for any K) and
        says where and how large the person is, which is what the
        self-attention between persons needs; the keypoints themselves
        steer the pose attention through the reference.

        Args:
            poses (Tensor): [bs, n, 2K] (x1, y1, ..., xK, yK) in [0, 1] of
                the valid image area; used detached.
            content (Tensor): [bs, n, c] content queries.

        Returns:
            DecoderQueries: ``position`` [bs, n, c], ``reference`` the
            poses.
        """
        if self.pose_position is None:
            raise TypeError(
                'queries_from_poses needs the positional projection of '
                'given poses: set model.bbox_head.transformer.'
                'given_pose_queries=True (a pose group maker in '
                'model.bbox_head.fixed_target_groups needs it)')
        if poses.dim() != 3 or poses.size(-1) != 2 * self.num_keypoints:
            raise ValueError(
                f'queries_from_poses takes poses [bs, n, '
                f'{2 * self.num_keypoints}], got {tuple(poses.shape)}')
        poses = poses.detach()
        keypoints = poses.unflatten(-1, (self.num_keypoints, 2))
        low, high = keypoints.amin(-2), keypoints.amax(-2)
        boxes = torch.cat([(low + high) / 2, high - low], -1)
        position = self.pose_position(
            box_sine_embedding(boxes, self.embed_dims // 2))
        return DecoderQueries(content, position, poses)

    def forward_decoder(self,
                        queries,
                        memory,
                        levels,
                        kpt_branches,
                        self_attn_mask=None):
        """Stage 3: decode any set of queries under a self-attention mask.

        Args:
            queries (DecoderQueries): nq queries, poses [bs, nq, 2K].
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            kpt_branches (nn.ModuleList): The head's pose branches; the
                first ``num_layers`` refine the poses.
            self_attn_mask (Tensor | QueryGroupMask | None): Mask of the
                decoder self-attention over the nq queries.

        Returns:
            tuple[Tensor, Tensor]: states [num_layers, bs, nq, c] and each
            layer's pose [num_layers, bs, nq, 2K] (see
            :class:`PETRPoseDecoder`).
        """
        return self.decoder(
            reference_poses=queries.reference,
            kpt_branches=kpt_branches[:self.decoder.num_layers],
            self_attn_mask=self_attn_mask,
            **queries.sequence_first(),
            **memory_inputs(memory, levels))

    def forward_refine(self, memory, levels, poses, img_inds,
                       refine_branches):
        """Refine the keypoints of selected persons, K queries per person.

        The self-attention runs per person (its K queries); the deformable
        cross-attention regroups the persons by image, so each layer
        projects each image's memory once, not once per person
        (:class:`.PerImageQueries`).

        Args:
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            poses (Tensor): [n, 2K] poses in [0, 1] (detached), one per
                person to refine.
            img_inds (Tensor): [n] long, the image of each person: its
                queries attend to that image's memory only.
            refine_branches (nn.ModuleList): One (x, y) delta branch per
                refine layer.

        Returns:
            Tensor: [num_refine_layers, n, K, 2] keypoints in [0, 1], each
            layer's attached to its refine branch.
        """
        num_persons = poses.size(0)
        query_pos, query = self.refine_query_embedding.weight.split(
            self.embed_dims, dim=1)
        # Memory, mask and shapes per image, valid ratios per person.
        inputs = dict(
            memory_inputs(memory, levels),
            valid_ratios=levels['valid_ratios'][img_inds])
        _, keypoints = self.refine_decoder(
            query=query.unsqueeze(1).expand(-1, num_persons, -1),
            query_pos=query_pos.unsqueeze(1).expand(-1, num_persons, -1),
            reference_points=poses.view(num_persons, self.num_keypoints, 2),
            reg_branches=refine_branches,
            return_predictions=True,
            per_image_queries=PerImageQueries(img_inds, memory.size(0)),
            **inputs)
        return keypoints
