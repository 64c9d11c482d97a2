"""ONNX export of every model family that claims it, checked against
PyTorch, and ``pytorch2onnx.py --verify`` failing when the graph is wrong.

One tiny random-init config per family (tests/configs/, R18, 1-2 encoder
and decoder layers, 10-30 queries; DINO and Co-DINO also with the stride-4
level, 5 levels like configs/dino/dino_r50_5scale_12ep.py), exported at
64 x 96 (its stride-64 level is 1 x 2: the size-1 level that used to export
NaN reference points) and checked on other images than the one traced, two
per batch; three of them exported at a second size too (H x W is fixed per
file, docs/deployment.md).
"""
import logging
import re

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, load_tool

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from opera.apis import ONNXRuntimeDetector, export_onnx, init_model  # noqa
from opera.apis.inference_graph import OUTPUT_NAMES  # noqa
from opera.apis.onnx_verify import ATOL, PIXEL_ATOL, verify_onnx  # noqa

pytestmark = pytest.mark.usefixtures('single_thread')

CONFIGS = f'{REPO_ROOT}/tests/configs'
# The 4-level tiny DINO / Co-DINO with the stride-4 level (R18 layer1, 64
# channels) as DINO-5scale adds it.
FIVE_LEVELS = {
    'model.backbone.out_indices': (0, 1, 2, 3),
    'model.neck.in_channels': [64, 128, 256, 512],
    'model.neck.num_outs': 5,
    'model.bbox_head.transformer.num_feature_levels': 5,
    'model.bbox_head.transformer.encoder.transformerlayers.attn_cfgs.'
    'num_levels': 5,
    'model.bbox_head.transformer.decoder.transformerlayers.attn_cfgs.1.'
    'num_levels': 5,
}
# Co-DINO-5scale's auxiliary heads run on the 5 encoder levels + 1.
AUX_STRIDES = [4, 8, 16, 32, 64, 128]
CO_DINO_FIVE_LEVELS = dict(
    FIVE_LEVELS, **{
        'model.bbox_head.fixed_target_groups.1.heads.0.rpn_head.'
        'anchor_generator.strides': AUX_STRIDES,
        'model.bbox_head.fixed_target_groups.1.heads.0.roi_head.'
        'bbox_roi_extractor.featmap_strides': AUX_STRIDES[:5],
        'model.bbox_head.fixed_target_groups.1.heads.1.head.'
        'anchor_generator.strides': AUX_STRIDES,
    })
# family: (config, cfg options, feature levels)
FAMILIES = {
    'h_deformable_detr': ('tiny_h_deformable_detr.py', {}, 4),
    'dino_4scale': ('tiny_dino.py', {}, 4),
    'dino_5scale': ('tiny_dino.py', FIVE_LEVELS, 5),
    'co_deformable_detr': ('tiny_co_deformable_detr.py', {}, 4),
    'co_dino_5scale': ('tiny_co_dino.py', CO_DINO_FIVE_LEVELS, 5),
    'petr': ('tiny_petr.py', {}, 4),
    'h_petr': ('tiny_h_petr.py', {}, 4),
}
SIZE = (64, 96)
SECOND_SIZE = (96, 128)
# ONNX Runtime vs PyTorch is float rounding here: far below the tolerances.
ROUNDING = 1e-4


def build(family):
    config, options, _ = FAMILIES[family]
    torch.manual_seed(0)
    return init_model(f'{CONFIGS}/{config}', None, 'cpu',
                      dict(options) or None)


def random_batch(size, seed, batch=2):
    """Images (not the seed-0 one the files are traced with) and metas."""
    img = torch.randn(
        batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    metas = [
        dict(img_shape=(*size, 3), scale_factor=np.ones(4, np.float32))
        for _ in range(batch)
    ]
    return img, metas


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """exported(family, size) -> (model, .onnx path), each made once."""
    folder = tmp_path_factory.mktemp('onnx_families')
    cache = {}

    def get(family, size=SIZE):
        if (family, size) not in cache:
            model = build(family)
            path = str(folder / f'{family}_{size[0]}x{size[1]}.onnx')
            example, _ = random_batch(size, seed=0, batch=1)
            export_onnx(model, path, size, config=FAMILIES[family][0],
                        example=example)
            cache[family, size] = model, path
        return cache[family, size]

    return get


def assert_agrees(report):
    assert report['failures'] == {}, report
    assert report['given_topk'] is None
    for name, value in report['differences'].items():
        assert value < (PIXEL_ATOL if '(px)' in name else ATOL), name
        if '(px)' not in name:
            assert value < ROUNDING, (name, value)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_family_agrees_with_pytorch(exported, family):
    model, path = exported(family)
    img, metas = random_batch(SIZE, seed=1)
    with torch.no_grad():
        levels = model.extract_feat(img)
    assert len(levels) == FAMILIES[family][2]
    report = verify_onnx(model, path, img, metas, num_threads=1)
    assert_agrees(report)
    assert set(OUTPUT_NAMES[model.bbox_head.inference_kind]) <= set(
        report['differences'])
    assert 'final boxes (px)' in report['differences']


@pytest.mark.parametrize('family', ['dino_5scale', 'co_dino_5scale', 'petr'])
def test_second_input_size(exported, family):
    model, path = exported(family, SECOND_SIZE)
    img, metas = random_batch(SECOND_SIZE, seed=2)
    assert_agrees(verify_onnx(model, path, img, metas, num_threads=1))
    # H x W is fixed per file: the first size's file refuses these images.
    _, first = exported(family)
    with pytest.raises(ValueError,
                       match=r'takes 64x96 images, got \(96, 128\)'):
        ONNXRuntimeDetector(first, model).run_graph(img)


# tools/deployment/pytorch2onnx.py --verify -------------------------------


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/deployment/pytorch2onnx.py')


def cli_options(options):
    return [
        f'{key}={list(value) if isinstance(value, list) else value}'.replace(
            ' ', '') for key, value in options.items()
    ]


def run_tool(tool, capsys, tmp_path, *extra, family='dino_5scale'):
    """Export ``family`` at SIZE with --verify in this process; returns
    (exit status, stdout, stderr)."""
    config, options, _ = FAMILIES[family]
    argv = [
        f'{CONFIGS}/{config}', '--out',
        str(tmp_path / 'model.onnx'), '--input-size',
        *map(str, SIZE), '--verify', *extra
    ]
    if options:
        argv += ['--cfg-options', *cli_options(options)]
    torch.manual_seed(0)
    status, message = 0, ''
    try:
        tool.main(argv)
    except SystemExit as exit:
        # sys.exit(message): the message on stderr, exit status 1.
        status = exit.code if isinstance(exit.code, int) else 1
        message = '' if isinstance(exit.code, int) else str(exit.code)
    captured = capsys.readouterr()
    return status, captured.out, captured.err + message


def test_cli_verifies_a_right_export(tool, capsys, tmp_path):
    status, out, err = run_tool(tool, capsys, tmp_path)
    assert status == 0, out + err
    assert 'input img [batch, 3, 64, 96]' in out
    assert f'verified: every output within tolerance (atol {ATOL:g}, ' \
        f'{PIXEL_ATOL:g} px)' in out
    assert 'FAIL' not in out
    for batch in ('1', '2'):
        block = out.split(f'batch of {batch}:')[1].split('batch of')[0]
        for name in ('cls_logits', 'boxes', 'final boxes (px)',
                     'final scores'):
            assert re.search(rf'^  {re.escape(name)} +[-0-9.e]+$', block,
                             re.MULTILINE), (name, block)


def add_to_output(onnx_file, name, delta):
    """Make the file's output ``name`` ``delta`` larger (metadata kept)."""
    model = onnx.load(onnx_file)
    exact = f'{name}_exact'
    for node in model.graph.node:
        for i, output in enumerate(node.output):
            if output == name:
                node.output[i] = exact
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(
            np.array(delta, np.float32), f'{name}_delta'))
    model.graph.node.append(
        onnx.helper.make_node('Add', [exact, f'{name}_delta'], [name]))
    onnx.save(model, onnx_file)


@pytest.mark.parametrize('broken', ['outputs', 'weights'])
def test_cli_verify_fails_on_a_wrong_graph(tool, capsys, tmp_path,
                                           monkeypatch, broken):
    """The file's boxes moved by 0.01, or the PyTorch model's class bias
    moved by 0.01 after the export: exit status 1, naming the outputs."""
    real_export = tool.export_onnx

    def export_then_break(detector, out_file, *args, **kwargs):
        graph = real_export(detector, out_file, *args, **kwargs)
        if broken == 'outputs':
            add_to_output(out_file, 'boxes', 0.01)
        else:
            with torch.no_grad():
                detector.bbox_head.cls_branches[0].bias += 0.01
        return graph

    monkeypatch.setattr(tool, 'export_onnx', export_then_break)
    status, out, err = run_tool(tool, capsys, tmp_path)
    assert status == 1, out + err
    wrong = 'boxes' if broken == 'outputs' else 'cls_logits'
    right = 'cls_logits' if broken == 'outputs' else 'boxes'
    assert 'ONNX Runtime differs from PyTorch' in err
    for batch in (1, 2):
        line = next(line for line in err.splitlines()
                    if line.startswith(f'batch of {batch}: {wrong} '))
        value = float(line.split()[4])
        assert 0.009 < value < 0.011 and line.endswith(f'> {ATOL:g}')
        assert f'batch of {batch}: {right} ' not in err
    assert f'{wrong:22s} 0.01  > {ATOL:g}: FAIL' in out
    # Not blamed on near-ties: with PyTorch's top-k choices it differs too.
    assert 'near-tied' not in err


def test_cli_tells_near_ties_from_a_wrong_graph(tool, capsys, tmp_path,
                                                monkeypatch):
    """Every encoder position scoring the same: ONNX Runtime's TopK takes
    the first positions, PyTorch's the ones its algorithm meets first, so
    the queries differ; the graph is right given PyTorch's choices."""
    num_positions = sum(
        -(-SIZE[0] // s) * -(-SIZE[1] // s) for s in (4, 8, 16, 32, 64))
    order = torch.zeros(1, num_positions).topk(30, dim=1)[1][0]
    if torch.equal(order, torch.arange(30)):
        pytest.skip('this torch.topk orders ties by index as ONNX does')
    real_init = tool.init_model

    def tied_scores(*args, **kwargs):
        model = real_init(*args, **kwargs)
        with torch.no_grad():
            model.bbox_head.cls_branches[-1].weight.zero_()
            model.bbox_head.cls_branches[-1].bias.zero_()
        return model

    monkeypatch.setattr(tool, 'init_model', tied_scores)
    status, out, err = run_tool(tool, capsys, tmp_path)
    assert status == 1, out + err
    assert 'batch of 1: cls_logits' in err and 'near-tied' in err
    assert "with PyTorch's top-k choices" in out
    assert "PyTorch's scores of the two choices differ by at most 0 " in out
    given = out.split("with PyTorch's top-k choices")[1].split('batch of')[0]
    assert 'FAIL' not in given

    status, out, err = run_tool(tool, capsys, tmp_path, '--allow-topk-ties')
    assert status == 0, out + err
    assert out.count('accepted (--allow-topk-ties)') == 2


def test_cli_tolerance_options(tool, capsys, tmp_path, monkeypatch):
    """--atol is what the raw outputs are held to: 0.01 of boxes passes
    under --atol 0.05 --pixel-atol 5."""
    real_export = tool.export_onnx

    def export_then_move(detector, out_file, *args, **kwargs):
        graph = real_export(detector, out_file, *args, **kwargs)
        add_to_output(out_file, 'boxes', 0.01)
        return graph

    monkeypatch.setattr(tool, 'export_onnx', export_then_move)
    status, out, err = run_tool(tool, capsys, tmp_path, '--atol', '0.05',
                                '--pixel-atol', '5')
    assert status == 0, out + err
    assert 'verified: every output within tolerance (atol 0.05, 5 px)' in out


# The ONNX Runtime backend: no silent fallbacks -----------------------------


def copy_with_metadata(path, folder, **changes):
    """A copy of the file with some ``opera.*`` metadata changed."""
    model = onnx.load(path)
    for prop in model.metadata_props:
        key = prop.key[len('opera.'):]
        if key in changes:
            prop.value = changes[key]
    copy = str(folder / 'copy.onnx')
    onnx.save(model, copy)
    return copy


def test_backend_checks_the_graph_input_against_the_metadata(
        exported, tmp_path):
    model, path = exported('dino_4scale')
    lying = copy_with_metadata(path, tmp_path, input_size='96x128')
    with pytest.raises(ValueError,
                       match=r'the graph takes .*not img \[batch, 3, 96, 128'
                       r'\] as its metadata'):
        ONNXRuntimeDetector(lying, model)


def test_backend_warns_about_another_config_name_and_version(
        exported, tmp_path, caplog):
    model, path = exported('dino_4scale')
    ONNXRuntimeDetector(path, model)  # same name and version: no warning
    assert 'in the file' not in caplog.text
    other = copy_with_metadata(
        path, tmp_path, config='other.py', opera_version='0.0.1')
    with caplog.at_level(logging.WARNING, logger='opera'):
        ONNXRuntimeDetector(other, model)
    assert ('config other.py in the file, tiny_dino.py here; opera_version '
            '0.0.1 in the file') in caplog.text


def test_onnxruntime_refuses_options_it_would_ignore(monkeypatch, capsys):
    demo = load_tool('demo/image_demo.py')
    for option in (['--device', 'cuda'], ['--non-strict']):
        with pytest.raises(SystemExit) as exit:
            demo.parse_args(
                ['in.jpg', 'cfg.py', 'model.onnx', '--backend',
                 'onnxruntime', *option])
        assert exit.value.code == 2
        assert '--device and --non-strict are for the pytorch backend' in (
            capsys.readouterr().err)
    test_tool = load_tool('tools/test.py')
    monkeypatch.setattr('sys.argv', [
        'test.py', 'cfg.py', 'model.onnx', '--backend', 'onnxruntime',
        '--eval', 'bbox', '--non-strict'
    ])
    with pytest.raises(SystemExit) as exit:
        test_tool.parse_args()
    assert exit.value.code == 2
    assert 'takes every weight from the .onnx file' in capsys.readouterr().err
