"""A training config is checked whole before anything is built: a misspelt
key outside the model, or settings that cannot work together, stop the run
naming the file, the key and the known names (opera/apis/config_checks.py).
"""
import glob
import os.path as osp
import subprocess
import sys

import pytest
from mmcv import Config

from conftest import REPO_ROOT, TOOL_TIMEOUT_S

import mmcv_custom  # noqa: F401  (registers the runner and hooks)
import opera  # noqa: F401  (registers modules)
from opera.apis.config_checks import (ConfigError, check_config,
                                       check_test_config)

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)
SAMPLE = osp.join(REPO_ROOT, 'configs', 'quickstart',
                  'h_deformable_detr_r18_sample.py')


def config_id(path):
    return osp.relpath(path, osp.join(REPO_ROOT, 'configs'))


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_every_recipe_passes_the_check(path):
    check_config(Config.fromfile(path), path)


def sample_with(options):
    cfg = Config.fromfile(SAMPLE)
    cfg.merge_from_dict(options)
    return cfg


def problems_of(options):
    with pytest.raises(ConfigError) as error:
        check_config(sample_with(options), SAMPLE)
    return str(error.value)


@pytest.mark.parametrize('options, where, known', [
    ({'optimzer': dict(lr=1.)}, 'optimzer', 'optimizer'),
    ({'runner.max_epoch': 2}, 'runner.max_epoch', 'max_epochs'),
    ({'checkpoint_config.max_keep_ckpt': 1},
     'checkpoint_config.max_keep_ckpt', 'max_keep_ckpts'),
    ({'checkpoint_config.filename_tmpl': 'e{}.pth',
      'checkpoint_config.create_symlnk': False},
     'checkpoint_config.create_symlnk', 'create_symlink'),
    ({'log_config.intervall': 5}, 'log_config.intervall', 'interval'),
    ({'log_config.hooks': [dict(type='TextLoggerHook', by_epochs=False)]},
     'log_config.hooks[0].by_epochs', 'by_epoch'),
    ({'evaluation.save_bets': 'bbox_mAP'}, 'evaluation.save_bets',
     'save_best'),
    ({'evaluation.classwize': True}, 'evaluation.classwize', 'classwise'),
    ({'optimizer.weight_decy': 0.}, 'optimizer.weight_decy',
     'weight_decay'),
    ({'optimizer_config.grad_clip.max_nrom': 1.},
     'optimizer_config.grad_clip.max_nrom', 'max_norm'),
    ({'lr_config.stepp': [3]}, 'lr_config.stepp', 'step'),
    ({'data.samples_per_gpus': 2}, 'data.samples_per_gpus',
     'samples_per_gpu'),
    ({'data.val_dataloader': dict(sample_per_gpu=2)},
     'data.val_dataloader.sample_per_gpu', 'samples_per_gpu'),
    ({'data.train.filter_empty': True}, 'data.train.filter_empty',
     'filter_empty_gt'),
])
def test_misspelt_key_is_named_with_the_file_and_known_name(
        options, where, known):
    message = problems_of(options)
    assert message.startswith(f'{SAMPLE}: 1 problem(s)')
    assert f"{where}: unknown" in message
    assert f"(did you mean '{known}'?)" in message


def test_misspelt_custom_hook_and_pipeline_keys_are_named():
    cfg = Config.fromfile(SAMPLE)
    cfg.custom_hooks[1]['priorty'] = 'HIGH'
    cfg.data.train.pipeline[2]['img_scal'] = (320, 256)
    cfg.data.val.pipeline[1]['transforms'][0]['keep_ration'] = True
    with pytest.raises(ConfigError) as error:
        check_config(cfg, SAMPLE)
    lines = str(error.value).splitlines()
    assert lines[0] == f'{SAMPLE}: 3 problem(s) in the config:'
    assert [line.split(':')[0].strip() for line in lines[1:]] == [
        'custom_hooks[1].priorty', 'data.train.pipeline[2].img_scal',
        'data.val.pipeline[1].transforms[0].keep_ration'
    ]


def test_helper_variables_at_the_top_level_are_allowed():
    check_config(sample_with({'my_img_scale': (1, 1)}), SAMPLE)


@pytest.mark.parametrize('key', ['data.samples_per_gpu',
                                 'data.train_dataloader.samples_per_gpu'])
def test_batch_size_zero_stops(key):
    message = problems_of({key: 0})
    assert f'{key}: must be an integer >= 1, got 0' in message


def test_more_detections_than_queries_times_classes_stops():
    # The sample has 30 one-to-one queries and 80 classes: 2400 at most.
    check_config(sample_with({'model.test_cfg.max_per_img': 2400}), SAMPLE)
    message = problems_of({'model.test_cfg.max_per_img': 2401})
    assert ('model.test_cfg.max_per_img: 2401 detections per image, but '
            'the head can give at most num_query x num_classes = 30 x 80 '
            '= 2400') in message


def test_test_tool_checks_the_detections_per_image_too():
    cfg = sample_with({'model.test_cfg.max_per_img': 2401,
                       'runner.max_epoch': 2})
    with pytest.raises(ConfigError) as error:
        check_test_config(cfg, SAMPLE)
    # Only what testing uses: the runner's keys are not its concern.
    assert str(error.value).splitlines()[1:] == [
        '  model.test_cfg.max_per_img: 2401 detections per image, but the '
        'head can give at most num_query x num_classes = 30 x 80 = 2400'
    ]


def test_train_tool_stops_before_building_anything(tmp_path):
    work_dir = tmp_path / 'work'
    result = subprocess.run([
        sys.executable, 'tools/train.py', SAMPLE, '--work-dir',
        str(work_dir), '--cfg-options', 'checkpoint_config.max_keep_ckpt=1'
    ], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=TOOL_TIMEOUT_S)
    assert result.returncode != 0
    last_lines = result.stderr.strip().splitlines()[-2:]
    assert SAMPLE in last_lines[0] and 'ConfigError' in last_lines[0]
    assert "checkpoint_config.max_keep_ckpt: unknown key (did you mean " \
        "'max_keep_ckpts'?)" in last_lines[1]
    assert not work_dir.exists()
