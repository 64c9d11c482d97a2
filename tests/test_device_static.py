"""Static half of the device check: tensor factories without ``device=``.

The virtual-device tests (test_device_correctness.py) see only the code
their two tiny models run. This scan covers all of opera's model and core
code: a ``torch.zeros(...)``-style call without ``device=`` makes a host
tensor, wrong on a GPU unless it is meant for the host or moved at once.
Each one that is meant is listed in ``HOST_TENSORS`` with the reason.
"""
import ast
import glob
import os.path as osp

from conftest import REPO_ROOT

FACTORIES = {'arange', 'as_tensor', 'empty', 'eye', 'from_numpy', 'full',
             'linspace', 'ones', 'rand', 'randint', 'randn', 'randperm',
             'tensor', 'zeros'}
HOST_TENSORS = {
    # The Hungarian matching runs on the host (scipy).
    'opera/core/bbox/assigners/repeated_targets.py candidate_queries',
    # Moved at once: .to(keypoints).
    'opera/core/keypoint/transforms.py visible_keypoint_bboxes',
    # Built on the host, compared, then moved with .to(device).
    'opera/models/query_groups/hybrid_matching.py proposal_ranks',
    # A parameter's initial value: it moves with the module.
    'opera/models/transformers/pose_transformer.py __init__',
    'opera/models/query_groups/co_detr/auxiliary_queries.py __init__',
    # Co-DETR draws its random subsets on the CPU generator (so seeded
    # runs equal its own); moved with .to(indices.device) at once.
    'opera/models/query_groups/co_detr/auxiliary_queries.py random_subset',
    # Drawing (draw_sampling_points.py): the level fractions are for the
    # picture, on the host like everything drawn.
    'opera/apis/sampling_points.py valid_fractions',
}


def host_factory_calls(source, path):
    """``'path function'`` of each ``torch.<factory>(...)`` call without a
    ``device=`` argument in ``source``."""
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if (isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in FACTORIES
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == 'torch'
                    and not any(k.arg == 'device' for k in node.keywords)):
                found.add(f'{path} {function.name}')
    return found


def test_scan_finds_a_factory_without_device():
    source = ('def good(x):\n    return torch.zeros(3, device=x.device)\n'
              'def bad(x):\n    return x + torch.arange(\n        3)\n')
    assert host_factory_calls(source, 'm.py') == {'m.py bad'}


def test_model_code_makes_host_tensors_only_where_meant():
    found = set()
    # The model code, and the one tool module that runs on a model's
    # tensors (the sampling-point drawing).
    for pattern in ('opera/models/**/*.py', 'opera/core/**/*.py',
                    'opera/apis/sampling_points.py'):
        for path in sorted(glob.glob(osp.join(REPO_ROOT, pattern),
                                     recursive=True)):
            with open(path) as f:
                found |= host_factory_calls(f.read(),
                                            osp.relpath(path, REPO_ROOT))
    assert found == HOST_TENSORS
