"""Fill the keypoint count K and the OKS sigmas of a keypoint layout into
the configs of a pose head's parts, so that a config names the layout once.

K appears in the PETR transformer (refine queries), its pose decoder, the
decoder's ``PoseDeformableAttention`` (one sampling point per keypoint) and
the criterion; the sigmas in the criterion's OKS losses and the OKS match
cost. A value a config writes
itself must agree with the layout: a stale K left over from a base config
is an error, not silently replaced.
"""
import copy

POSE_ATTENTION = 'PoseDeformableAttention'


def _set(cfg, key, value, where):
    """``cfg[key] = value``, refusing a different value already there."""
    if key in cfg and _normalised(cfg[key]) != _normalised(value):
        raise ValueError(f'{where}.{key} is {cfg[key]} but the keypoint '
                         f'layout gives {value}; remove {where}.{key} from '
                         'the config (the layout sets it)')
    cfg[key] = value


def _normalised(value):
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return value


def _layer_cfgs(transformerlayers):
    """The layer configs of a ``TransformerLayerSequence`` (one shared dict
    or one per layer)."""
    if isinstance(transformerlayers, dict):
        return [transformerlayers]
    return list(transformerlayers or [])


def transformer_with_layout(transformer, layout):
    """A copy of a PETR transformer config with K of ``layout`` filled in.

    Args:
        transformer (dict): ``opera.PETRTransformer`` config.
        layout (KeypointLayout): The keypoints.

    Returns:
        dict: The filled copy.
    """
    transformer = copy.deepcopy(transformer)
    num = layout.num_keypoints
    _set(transformer, 'num_keypoints', num, 'transformer')
    decoder = transformer['decoder']
    _set(decoder, 'num_keypoints', num, 'transformer.decoder')
    for layer in _layer_cfgs(decoder.get('transformerlayers')):
        attentions = layer.get('attn_cfgs', [])
        if isinstance(attentions, dict):
            attentions = [attentions]
        for attention in attentions:
            if attention.get('type', '').split('.')[-1] == POSE_ATTENTION:
                _set(attention, 'num_points', num,
                     'transformer.decoder...attn_cfgs')
    return transformer


def oks_cfg_with_layout(cfg, layout, where):
    """A copy of an OKS loss / cost config with the layout's K and sigmas.

    Args:
        cfg (dict): ``opera.OKSLoss`` or ``opera.OksCost`` config.
        layout (KeypointLayout): The keypoints.
        where (str): The config key, for error messages.

    Returns:
        dict: The filled copy.
    """
    cfg = copy.deepcopy(cfg)
    _set(cfg, 'num_keypoints', layout.num_keypoints, where)
    _set(cfg, 'sigmas', list(layout.sigmas), where)
    return cfg


def criterion_cfg_with_layout(criterion, layout, where='criterion'):
    """A copy of an ``opera.PETRCriterion`` config with the layout's K and
    the K and sigmas of its OKS losses.

    Args:
        criterion (dict): The criterion config.
        layout (KeypointLayout): The keypoints.
        where (str): The config key, for error messages.

    Returns:
        dict: The filled copy.
    """
    criterion = copy.deepcopy(criterion)
    _set(criterion, 'num_keypoints', layout.num_keypoints, where)
    for key in ('loss_oks', 'loss_oks_refine'):
        # A missing loss is named by the criterion itself.
        if criterion.get(key) is not None:
            criterion[key] = oks_cfg_with_layout(criterion[key], layout,
                                                 f'{where}.{key}')
    return criterion


def train_cfg_with_layout(train_cfg, layout):
    """A copy of a pose head's ``train_cfg`` whose assigner's OKS cost (if
    any) uses the layout's sigmas."""
    if train_cfg is None or 'oks_cost' not in train_cfg.get('assigner', {}):
        return train_cfg
    train_cfg = copy.deepcopy(train_cfg)
    assigner = train_cfg['assigner']
    assigner['oks_cost'] = oks_cfg_with_layout(assigner['oks_cost'], layout,
                                               'train_cfg.assigner.oks_cost')
    return train_cfg
