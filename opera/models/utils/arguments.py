"""Strict constructor arguments for modules built on permissive parents."""
import inspect

NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
         inspect.Parameter.KEYWORD_ONLY)


def declared_arguments(cls):
    """The argument names any ``__init__`` along the MRO of ``cls`` declares
    (``self`` and ``*args`` / ``**kwargs`` excluded)."""
    known = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is not None:
            known.update(p.name
                         for p in inspect.signature(init).parameters.values()
                         if p.kind in NAMED and p.name != 'self')
    return known


def reject_unknown_arguments(cls, kwargs):
    """Raise if ``kwargs`` holds a name no ``__init__`` of ``cls`` declares.

    mmdet's DETR heads take ``**kwargs`` and drop what they do not know, so a
    misspelt config key (``num_querry=300``) would otherwise train silently
    with the default. Call this in ``__init__`` before passing ``kwargs`` on.

    Raises:
        TypeError: Naming every unknown argument.
    """
    unknown = sorted(set(kwargs) - declared_arguments(cls))
    if unknown:
        raise TypeError(f'{cls.__name__} got unknown argument(s) '
                        f'{", ".join(unknown)} (misspelt config keys?)')


TRAIN_CFG_KEYS = ('assigner', )
TEST_CFG_KEYS = ('max_per_img', )
# A detection head may also run an NMS at test (Co-DINO's soft-NMS).
DETECTION_TEST_CFG_KEYS = TEST_CFG_KEYS + ('nms', )


def reject_unknown_cfg_keys(train_cfg, test_cfg, test_keys=TEST_CFG_KEYS):
    """Raise if a DETR-style head's ``train_cfg`` or ``test_cfg`` has a key
    the head does not read (``max_per_image`` would keep the default);
    ``test_keys`` are the ``test_cfg`` keys it reads.

    Raises:
        TypeError: Naming the unknown keys and the known ones.
    """
    for name, cfg, known in (('train_cfg', train_cfg, TRAIN_CFG_KEYS),
                             ('test_cfg', test_cfg, test_keys)):
        unknown = sorted(set(cfg or {}) - set(known))
        if unknown:
            raise TypeError(f'{name} has unknown key(s) {", ".join(unknown)}'
                            f' (known: {", ".join(known)})')


def require_cfg_keys(owner, path, base_config, **values):
    """Raise naming every argument in ``values`` that is None (not given).

    For the parts of a model's recipe (losses, transformer, positional
    encoding) that have no default: a default in the code would silently
    train another recipe than the config's.

    Args:
        owner (str): The class, for the message.
        path (str): Where its config sits (``model.bbox_head``).
        base_config (str): A config that gives them all.
        **values: Argument name -> the value given (None: missing).

    Raises:
        TypeError: Naming each missing key and its config path.
    """
    missing = [name for name, value in values.items() if value is None]
    if missing:
        keys = ', '.join(f'`{name}`' for name in missing)
        paths = ', '.join(f'{path}.{name}' for name in missing)
        raise TypeError(f'{owner} needs {keys} ({paths}): no default, so '
                        f'that no recipe applies silently; see '
                        f'{base_config}')
