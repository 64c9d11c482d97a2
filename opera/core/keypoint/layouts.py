"""Keypoint layouts: the names, OKS sigmas, flip pairs and skeleton of a
pose dataset, defined once and looked up by name.

A layout is everything that depends on *which* keypoints a dataset labels.
Datasets (evaluation sigmas, flip pairs for ``RandomFlip``), the OKS loss and
match cost (sigmas), the PETR head (K) and the drawing helpers (skeleton)
all read it, so a new keypoint set needs no code, only a layout in a config::

    keypoint_layout = dict(
        name='hand5',
        keypoint_names=['wrist', 'thumb', 'index', 'left_tip', 'right_tip'],
        sigmas=[0.05, 0.05, 0.05, 0.05, 0.05],
        flip_pairs=[[3, 4]],
        skeleton=[[0, 1], [0, 2], [2, 3], [2, 4]])

Built-in layouts: 'coco' (17 keypoints) and 'crowdpose' (14).
"""

# Keypoint sigmas of the COCO keypoint metric (cocoapi's
# ``COCOeval.Params.kpt_oks_sigmas``), by keypoint.
COCO_KEYPOINTS = (
    ('nose', .026),
    ('left_eye', .025),
    ('right_eye', .025),
    ('left_ear', .035),
    ('right_ear', .035),
    ('left_shoulder', .079),
    ('right_shoulder', .079),
    ('left_elbow', .072),
    ('right_elbow', .072),
    ('left_wrist', .062),
    ('right_wrist', .062),
    ('left_hip', .107),
    ('right_hip', .107),
    ('left_knee', .087),
    ('right_knee', .087),
    ('left_ankle', .089),
    ('right_ankle', .089),
)
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11),
                 (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2),
                 (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
# CrowdPose labels 12 of COCO's body keypoints (same sigmas) plus the top of
# the head and the neck, both evaluated with the shoulder sigma (xtcocotools
# ``keypoints_crowd``).
CROWDPOSE_KEYPOINT_NAMES = ('left_shoulder', 'right_shoulder', 'left_elbow',
                            'right_elbow', 'left_wrist', 'right_wrist',
                            'left_hip', 'right_hip', 'left_knee',
                            'right_knee', 'left_ankle', 'right_ankle')
CROWDPOSE_SKELETON = ((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3),
                      (3, 5), (0, 6), (1, 7), (6, 7), (6, 8), (8, 10), (7, 9),
                      (9, 11))


class KeypointLayout:
    """The keypoints of one pose dataset.

    Args:
        name (str): Registry name, e.g. 'coco'.
        keypoint_names (Sequence[str]): K distinct names, in annotation
            order.
        sigmas (Sequence[float]): K positive OKS sigmas (COCO convention:
            the keypoint variance is ``(2 * sigma)^2``).
        flip_pairs (Sequence[Sequence[int]]): ``[left, right]`` index pairs
            that a mirror swaps; every keypoint is in at most one pair.
        skeleton (Sequence[Sequence[int]]): ``[i, j]`` index pairs joined
            by a limb when drawing.

    Raises:
        ValueError: On any inconsistency, naming the layout and the field.
    """

    def __init__(self, name, keypoint_names, sigmas, flip_pairs, skeleton):
        self.name = str(name)
        self.keypoint_names = tuple(str(n) for n in keypoint_names)
        self.sigmas = tuple(float(s) for s in sigmas)
        self.flip_pairs = tuple(tuple(int(i) for i in p) for p in flip_pairs)
        self.skeleton = tuple(tuple(int(i) for i in p) for p in skeleton)
        self._check()

    @property
    def num_keypoints(self):
        """int: K."""
        return len(self.keypoint_names)

    def _check(self):
        where = f"keypoint layout '{self.name}'"
        num = self.num_keypoints
        if num == 0:
            raise ValueError(f'{where}: keypoint_names is empty')
        if len(set(self.keypoint_names)) != num:
            raise ValueError(f'{where}: keypoint_names are not distinct')
        if len(self.sigmas) != num:
            raise ValueError(f'{where}: {len(self.sigmas)} sigmas for {num} '
                             'keypoint_names')
        if min(self.sigmas) <= 0:
            raise ValueError(f'{where}: sigmas must be positive')
        for field in ('flip_pairs', 'skeleton'):
            for pair in getattr(self, field):
                if len(pair) != 2 or not all(0 <= i < num for i in pair):
                    raise ValueError(
                        f'{where}: {field} entry {list(pair)} is out of range '
                        f'for {num} keypoints')
        flipped = [i for pair in self.flip_pairs for i in pair]
        if len(set(flipped)) != len(flipped):
            raise ValueError(f'{where}: a keypoint is in two flip_pairs')

    def flip_index(self):
        """list[int]: Entry k is the keypoint that k becomes in a mirror."""
        index = list(range(self.num_keypoints))
        for left, right in self.flip_pairs:
            index[left], index[right] = right, left
        return index

    def to_dict(self):
        """dict: The constructor arguments (lists), e.g. for a config."""
        return dict(
            name=self.name,
            keypoint_names=list(self.keypoint_names),
            sigmas=list(self.sigmas),
            flip_pairs=[list(p) for p in self.flip_pairs],
            skeleton=[list(p) for p in self.skeleton])

    def __eq__(self, other):
        return (isinstance(other, KeypointLayout)
                and self.to_dict() == other.to_dict())

    def __repr__(self):
        return (f"KeypointLayout(name='{self.name}', "
                f'num_keypoints={self.num_keypoints})')


_LAYOUTS = {}


def register_keypoint_layout(layout, force=False):
    """Make ``layout`` available by its name.

    Args:
        layout (KeypointLayout | dict): The layout or its constructor
            arguments.
        force (bool): Replace a different layout of the same name.

    Returns:
        KeypointLayout: The registered layout.
    """
    if isinstance(layout, dict):
        layout = KeypointLayout(**layout)
    known = _LAYOUTS.get(layout.name)
    if known is not None and known != layout and not force:
        raise KeyError(f"a different keypoint layout '{layout.name}' is "
                       'already registered; pass force=True to replace it')
    _LAYOUTS[layout.name] = layout
    return layout


def get_keypoint_layout(layout):
    """The layout that a config names or defines.

    Args:
        layout (str | dict | KeypointLayout): A registered name ('coco',
            'crowdpose', ...), the constructor arguments of a new layout
            (``name``, ``keypoint_names``, ``sigmas``, ``flip_pairs``,
            ``skeleton``) or a layout.

    Returns:
        KeypointLayout: The layout (a dict is built, not registered).

    Raises:
        ValueError: For a dict or layout that differs from the registered
            layout of its name: two layouts of one name would let a model
            and a dataset look alike by name and disagree in sigmas.
    """
    if isinstance(layout, KeypointLayout):
        return _not_a_namesake(layout)
    if isinstance(layout, str):
        if layout not in _LAYOUTS:
            raise KeyError(f"unknown keypoint layout '{layout}': registered "
                           f'are {sorted(_LAYOUTS)}; or define one with a '
                           'dict (see opera/core/keypoint/layouts.py)')
        return _LAYOUTS[layout]
    if isinstance(layout, dict):
        missing = {'name', 'keypoint_names', 'sigmas', 'flip_pairs',
                   'skeleton'} - set(layout)
        if missing:
            raise KeyError(f'keypoint layout dict misses {sorted(missing)}')
        return _not_a_namesake(KeypointLayout(**layout))
    raise TypeError('keypoint_layout must be a name, a dict or a '
                    f'KeypointLayout, got {type(layout).__name__}')


def _not_a_namesake(layout):
    """``layout``, unless a different layout of its name is registered."""
    known = _LAYOUTS.get(layout.name)
    if known is None or known == layout:
        return layout
    ours, theirs = layout.to_dict(), known.to_dict()
    differ = [field for field in ours if ours[field] != theirs[field]]
    raise ValueError(
        f"keypoint layout '{layout.name}' differs from the registered "
        f"layout '{layout.name}' in {', '.join(differ)}: give a layout of "
        'other keypoint facts a name of its own')


def layouts_with(num_keypoints):
    """list[KeypointLayout]: Registered layouts of K keypoints, in
    registration order (built-in ones first)."""
    return [lay for lay in _LAYOUTS.values()
            if lay.num_keypoints == num_keypoints]


def resolve_sigmas(num_keypoints=17, sigmas=None, keypoint_layout=None):
    """Per-keypoint OKS sigmas from, in this order, explicit ``sigmas``, a
    ``keypoint_layout`` or the first registered layout of K keypoints.

    Args:
        num_keypoints (int): K.
        sigmas (Sequence[float], optional): Explicit sigmas, length K.
        keypoint_layout (str | dict | KeypointLayout, optional): A layout;
            its K must equal ``num_keypoints``.

    Returns:
        tuple[float]: K sigmas.
    """
    if sigmas is None and keypoint_layout is not None:
        layout = get_keypoint_layout(keypoint_layout)
        if layout.num_keypoints != num_keypoints:
            raise ValueError(
                f"keypoint layout '{layout.name}' has "
                f'{layout.num_keypoints} keypoints, not {num_keypoints}')
        sigmas = layout.sigmas
    if sigmas is None:
        known = layouts_with(num_keypoints)
        if not known:
            raise ValueError(f'No default OKS sigmas for {num_keypoints} '
                             'keypoints; pass `sigmas` or `keypoint_layout`.')
        return known[0].sigmas
    if len(sigmas) != num_keypoints:
        raise ValueError(f'Got {len(sigmas)} sigmas for {num_keypoints} '
                         'keypoints.')
    return tuple(float(sigma) for sigma in sigmas)


def _flip_pairs_by_name(names):
    """``[left, right]`` index pairs of the ``left_x`` / ``right_x`` names."""
    return [(i, names.index('right_' + name[len('left_'):]))
            for i, name in enumerate(names) if name.startswith('left_')]


COCO = register_keypoint_layout(
    KeypointLayout(
        name='coco',
        keypoint_names=[name for name, _ in COCO_KEYPOINTS],
        sigmas=[sigma for _, sigma in COCO_KEYPOINTS],
        flip_pairs=_flip_pairs_by_name([name for name, _ in COCO_KEYPOINTS]),
        skeleton=COCO_SKELETON))
_COCO_SIGMA = dict(COCO_KEYPOINTS)
CROWDPOSE = register_keypoint_layout(
    KeypointLayout(
        name='crowdpose',
        keypoint_names=CROWDPOSE_KEYPOINT_NAMES + ('top_head', 'neck'),
        sigmas=[_COCO_SIGMA[n] for n in CROWDPOSE_KEYPOINT_NAMES] +
        [_COCO_SIGMA['left_shoulder']] * 2,
        flip_pairs=_flip_pairs_by_name(CROWDPOSE_KEYPOINT_NAMES),
        skeleton=CROWDPOSE_SKELETON))
